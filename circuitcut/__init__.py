"""circuitcut: find, remove and compare the parts of a language model that carry a capability.

The public API, one name per job (each has a runnable example in its docstring):

- :func:`load_model`: a TransformerLens ``TransformerBridge``, offline for the embedded default.
- :func:`corpus_windows`: token windows of a named corpus, with disjoint stats/eval splits.
- :func:`collect_stats`: streaming per-neuron statistics collected by hooks.
- :class:`Mask`: what a method removes (neurons or weights), ``remaining(model)`` as hooks or
  ``remove_from(model)`` as weight surgery, zero or mean fill, saved with the model shape.
- :class:`PruningConfig`, :func:`prune`, :class:`PruningResult`: selective pruning.
- :class:`SubnetworkConfig`, :func:`find_subnetwork`, :class:`SubnetworkResult`: knowledge-critical
  subnetworks.

The names are imported on first use (see ``circuitcut._lazy``), so ``import circuitcut`` is fast.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from circuitcut._lazy import lazy_exports

try:
    __version__ = version("circuitcut")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "unknown (not installed)"

__all__ = [
    "load_model",
    "corpus_windows",
    "collect_stats",
    "Mask",
    "PruningConfig",
    "prune",
    "PruningResult",
    "SubnetworkConfig",
    "find_subnetwork",
    "SubnetworkResult",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "circuitcut.data.corpora": ("corpus_windows",),
    "circuitcut.masks": ("Mask",),
    "circuitcut.models": ("load_model",),
    "circuitcut.pruning": ("PruningConfig", "PruningResult", "prune"),
    "circuitcut.stats": ("collect_stats",),
    "circuitcut.subnetwork": ("SubnetworkConfig", "SubnetworkResult", "find_subnetwork"),
})

if TYPE_CHECKING:  # what type checkers and editors see, as the eager imports were
    from circuitcut.data.corpora import corpus_windows
    from circuitcut.masks import Mask
    from circuitcut.models import load_model
    from circuitcut.pruning import PruningConfig, PruningResult, prune
    from circuitcut.stats import collect_stats
    from circuitcut.subnetwork import SubnetworkConfig, SubnetworkResult, find_subnetwork
