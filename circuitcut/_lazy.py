"""Package attributes imported on first use (PEP 562).

``import circuitcut.cli`` must not import torch and TransformerLens (seconds) just because the
package's ``__init__`` names the API: ``circuitcut --help`` would wait for them. So a package's
public names are looked up in their modules the first time they are asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name of ``exports`` (module -> names)
    comes from its module on first use; any other name is tried as a submodule, as attribute access
    found submodules when the package imported them all eagerly (``circuitcut.models.load_model``)."""
    where = {name: module for module, names in exports.items() for name in names}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        if name in where:
            value = getattr(importlib.import_module(where[name]), name)
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":  # the submodule exists but an import inside it failed
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        namespace[name] = value  # found once; later lookups never reach __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
