"""Every field of a config dataclass as a command-line flag, so the CLI can set whatever decides a run.

``add_config_args(parser, SubnetworkConfig)`` adds ``--init-p``, ``--suppress-rank`` ... typed by
the rules below; ``config_overrides(args, SubnetworkConfig)`` returns only the flags the user gave,
to lay over a preset:

* ``int``, ``float``, ``str``: as is; a ``Literal`` gives its choices;
* ``X | None``: ``none`` means ``None``;
* ``tuple[...]``: comma-separated (``--layers 15,16,17`` or a range ``--layers 15-29``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from typing import Any, Literal


def field_docs(cls) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body), joined to one line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _parts(annotation) -> tuple[Any, bool]:
    """The annotation without ``| None``, and whether ``None`` was allowed."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return rest[0], len(rest) < len(args)
    return annotation, False


def _items(text: str, item_type) -> tuple:
    out = []
    for part in text.split(","):
        part = part.strip()
        if item_type is int and "-" in part[1:]:
            lo, hi = part.split("-", 1)
            out += range(int(lo), int(hi) + 1)
        elif part:
            out.append(item_type(part))
    return tuple(out)


def _parser(annotation):
    """The argparse ``type`` for one field (a callable from the flag's text to the value)."""
    inner, optional = _parts(annotation)
    if typing.get_origin(inner) is tuple:
        item = typing.get_args(inner)[0]
        convert = lambda text: _items(text, item)  # noqa: E731
    elif typing.get_origin(inner) is Literal:
        convert = str
    else:
        convert = inner

    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a valid {getattr(inner, '__name__', inner)}") from None

    return parse


def add_config_args(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of dataclass ``cls`` (default: unset, so a preset's value stands)."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    group = parser.add_argument_group(f"{cls.__name__} fields (unset: the preset's value)")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        inner, _ = _parts(hints[f.name])
        choices = typing.get_args(inner) if typing.get_origin(inner) is Literal else None
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_parser(hints[f.name]),
                           default=argparse.SUPPRESS, choices=choices, metavar=None if choices else "X",
                           help=f"{docs.get(f.name, '')} (default: {shown})".replace("%", "%%"))


def config_overrides(args: argparse.Namespace, cls) -> dict:
    """The config fields given on the command line (an unset flag is absent from ``args``)."""
    given = vars(args)
    return {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}
