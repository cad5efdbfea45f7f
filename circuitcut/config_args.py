"""Every field of a config dataclass as a command-line flag, so the CLI can set whatever decides a run.

``add_config_args(groups, SubnetworkConfig, shown)`` adds ``--init-p``, ``--suppress-rank`` ... to the
argument group each field names in its metadata (``{"group": ..., "metavar": ...}``), typed by the rules
below; ``config_overrides(args, SubnetworkConfig)`` returns only the flags the user gave, to lay over a
preset:

* ``int``, ``float``, ``str``: as is (metavar ``N``, ``FLOAT``, ``NAME``); a ``Literal`` gives its choices;
* ``X | None``: ``none`` means ``None``;
* ``tuple[...]``: comma-separated (``--layers 15,16,17`` or a range ``--layers 15-29``);
* ``dict[str, float]``: comma-separated ``key=value`` pairs (``--eps mlp=1e-3,attn_v=1e-4``; ``none``: empty);
* ``float | dict[str, float]``: one value, or ``key=value`` pairs (``--frac 0.02``, ``--frac mlp=0.02,heads=0.05``);
* ``bool``: a switch and its negation (``--one-shot``, ``--no-one-shot``).

A flag's help is the summary of its field's docstring (the text before the first blank line), with
the reST quotes dropped and a quoted field name written as its flag.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

_NONE = object()


def option(group: str, default: Any, metavar: str | None = None, legacy: Any = _NONE) -> Any:
    """A config field whose flag is listed under ``group``; ``metavar`` replaces the one its type gives;
    ``legacy``, for a field added after runs were saved, is the value that reproduces them
    (:func:`~circuitcut.runs.config_from_dict`)."""
    metadata = {"group": group, "metavar": metavar}
    if legacy is not _NONE:
        metadata["legacy"] = legacy
    return dataclasses.field(default=default, metadata=metadata)


TYPE_METAVARS = {int: "N", float: "FLOAT", str: "NAME"}
"""What a flag of each type takes, in its usage (argparse would print the flag's name in capitals)."""


def flag(name: str) -> str:
    """The flag of field ``name``: ``min_target`` -> ``--min-target``."""
    return "--" + name.replace("_", "-")


def field_summaries(cls) -> dict[str, str]:
    """Each field's docstring (the string literal under it in the class body) up to its first blank
    line, joined to one line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split("\n\n")[0].split())
    return docs


def _union(annotation) -> bool:
    return isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union


def _parts(annotation) -> tuple[Any, bool]:
    """The annotation without ``| None`` (a union still where two types remain), and whether ``None`` was allowed."""
    args = typing.get_args(annotation)
    if _union(annotation):
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), len(rest) < len(args)
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


def _pairs(text: str, value_type) -> dict:
    if text.lower() == "none":
        return {}
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(text)
    return {key.strip(): value_type(value) for key, value in pairs}


def _parser(annotation):
    """The argparse ``type`` for one field (a callable from the flag's text to the value)."""
    inner, optional = _parts(annotation)
    if _union(inner):  # one value, or key=value pairs
        pairs, one = sorted(typing.get_args(inner), key=lambda a: typing.get_origin(a) is not dict)
        pairs, one = _parser(pairs), _parser(one)
        convert = lambda text: pairs(text) if "=" in text else one(text)  # noqa: E731
    elif typing.get_origin(inner) is dict:
        value = typing.get_args(inner)[1]
        convert = lambda text: _pairs(text, value)  # noqa: E731
    elif typing.get_origin(inner) is tuple:
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


def _metavar(annotation) -> str | None:
    """What the flag takes, from the field's type (``None`` for choices, which argparse lists)."""
    inner, optional = _parts(annotation)
    if typing.get_origin(inner) is Literal:
        return None
    if _union(inner):
        text = "|".join(map(_metavar, typing.get_args(inner)))
    elif typing.get_origin(inner) is dict:
        text = "K=FLOAT,..."
    elif typing.get_origin(inner) is tuple:
        text = "N1,N2|A-B" if typing.get_args(inner)[0] is int else "A,B"
    else:
        text = TYPE_METAVARS[inner]
    return f"{text}|none" if optional else text


def typed(value) -> str:
    """A field's value as the user would type it after its flag."""
    if value is None or value == {}:
        return "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool):
        return str(value).lower()
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _help(summary: str, names: set[str]) -> str:
    """A docstring summary as help, in argparse's style: no reST quotes (a quoted field name is its
    flag, ``None`` is ``none``), no final stop, and a lowercase first word unless it is a name (``IsA``)."""
    def unquote(match: re.Match) -> str:
        return flag(match[1]) if match[1] in names else "none" if match[1] == "None" else match[1]

    text = re.sub(r"``([^`]+)``", unquote, summary).rstrip(".")
    first = text.split()[0]
    return text if any(c.isupper() for c in first[1:]) else text[0].lower() + text[1:]


def add_config_args(groups: dict[str, argparse._ArgumentGroup], cls, shown) -> None:
    """One flag per field of dataclass ``cls`` in the group its metadata names, with the default that
    config ``shown`` (the preset the flags lay over) has; unset, a flag leaves the preset's value."""
    hints, summaries = typing.get_type_hints(cls), field_summaries(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        inner, _ = _parts(hints[f.name])
        choices = typing.get_args(inner) if typing.get_origin(inner) is Literal else None
        text = f"{_help(summaries[f.name], names)} (default: {typed(getattr(shown, f.name))})"
        kind = (dict(action=argparse.BooleanOptionalAction) if inner is bool else
                dict(type=_parser(hints[f.name]), choices=choices,
                     metavar=f.metadata.get("metavar") or _metavar(hints[f.name])))
        groups[f.metadata["group"]].add_argument(flag(f.name), dest=f.name, default=argparse.SUPPRESS,
                                                 help=text.replace("%", "%%"), **kind)


def config_overrides(args: argparse.Namespace, cls) -> dict:
    """The config fields given on the command line (an unset flag is absent from ``args``)."""
    given = vars(args)
    return {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}


@contextlib.contextmanager
def fields_as_flags(cls) -> Iterator[None]:
    """Say ``--min-target`` where a config's validation says ``min_target``: on the command line the
    user typed the flag. (Only the config's own checks: other messages use these words as English.)"""
    try:
        yield
    except ValueError as err:
        names = "|".join(f.name for f in dataclasses.fields(cls))
        raise ValueError(re.sub(rf"(?<![-\w])({names})\b", lambda m: flag(m[1]), str(err))) from err
