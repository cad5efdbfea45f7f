"""Redrawing some figures: names checked before anything loads, and only their captions replaced."""

import pytest

from circuitcut.figures import replace_captions, make_figures


def test_unknown_figure_is_refused_before_the_model_loads(tmp_path):
    with pytest.raises(ValueError, match="--only importance_scater: no such figure; choose from .*importance_scatter"):
        make_figures(tmp_path, only=["importance_scater"])  # a model load would take seconds and log


def testreplace_captions_keeps_the_other_figures(tmp_path):
    path = tmp_path / "CAPTIONS.md"
    path.write_text("# Figures\n\n- runs: x\n\n- `a.png`: old a\n- `b.png`: old b\n")
    replace_captions(path, {"b": "new b", "c": "new c"})
    assert path.read_text() == "# Figures\n\n- runs: x\n\n- `a.png`: old a\n- `b.png`: new b\n- `c.png`: new c\n"
