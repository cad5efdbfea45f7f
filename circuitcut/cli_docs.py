"""``docs/cli.md``: every command's ``--help`` and what each subnetwork preset sets, generated from the
parsers so that it cannot drift from them.

``python -m circuitcut.cli_docs [PATH]`` (from the repository root; default ``docs/cli.md``) rewrites
it; ``tests/test_cli.py`` fails while the committed file differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from circuitcut.cli import build_parser, every_command
from circuitcut.config_args import flag, typed

WIDTH = 100
"""Help line width: fixed, so the file does not change with the terminal it was written from."""


def _block(title: str, help_text: str) -> list[str]:
    return [f"## {title}", "", "```", help_text.rstrip(), "```", ""]


def _presets() -> list[str]:
    from circuitcut.subnetwork.config import PRESETS

    lines = ["## Subnetwork presets", "",
             "`circuitcut subnet --preset NAME` starts from these flags; any flag given as well replaces the "
             "preset's.", ""]
    for name, settings in PRESETS.items():
        flags = " ".join(f"{flag(field)} {typed(value)}" for field, value in settings.items())
        lines.append(f"- `{name}`: " + (f"`{flags}`" if flags else "the defaults `circuitcut subnet --help` shows"))
    return lines


def reference_markdown() -> str:
    """The text of ``docs/cli.md``."""
    parser = build_parser(width=WIDTH)
    lines = ["# Command line reference", "",
             "Generated from the parsers by `python -m circuitcut.cli_docs`; edit `circuitcut/cli.py` or the "
             "field docstrings of `SubnetworkConfig`, not this file.", ""]
    lines += _block("circuitcut", parser.format_help())
    for name, command in every_command(parser).items():
        lines += _block(f"circuitcut {name}", command.format_help())
    return "\n".join(lines + _presets()) + "\n"


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/cli.md")
    path.write_text(reference_markdown())
    print(f"wrote {path}")
