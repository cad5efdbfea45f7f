"""What every notebook starts with, so that it runs as the command line does and keeps what it shows when saved."""

from __future__ import annotations

import os

import plotly.io as pio

from circuitcut import threads

SMALL = "CIRCUITCUT_SMALL"
"""Environment variable: ``1`` shrinks every notebook run to a smoke test (the test suite sets it)."""


def setup() -> bool:
    """Set torch's threads and plotly's renderer for a notebook; returns whether budgets are small.

    Threads: as the command line sets them (the cores other jobs leave free), since torch's one thread per core
    is many times slower on a busy machine. Figures: plotly's own output, which JupyterLab and VS Code draw
    with the plotly.js they bundle (no network), plus a PNG beside it, so that a notebook saved with its outputs
    shows its figures where no JavaScript runs. The PNG needs kaleido's browser; small budgets skip it, so the
    test suite needs none.
    """
    threads.set_threads()
    small = os.environ.get(SMALL) == "1"
    pio.renderers.default = "plotly_mimetype" if small else "plotly_mimetype+png"
    return small
