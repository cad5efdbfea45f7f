"""Notebooks are saved with their outputs (figures shown without re-running), and each runs top to bottom on a
fresh kernel, offline, with the small budget (CIRCUITCUT_SMALL=1)."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_with_its_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    code = [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    # run top to bottom once, in order: a saved notebook shows what its code gives, not a patchwork of reruns
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "run it top to bottom, then save"
    outputs = [out for cell in code for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"], "a saved cell failed"
    figures = [out for out in outputs if PLOTLY in out.get("data", {})]
    assert figures, "no figure saved"
    # a viewer without JavaScript (GitHub, nbviewer offline) shows the PNG beside the interactive figure
    assert all("image/png" in out["data"] for out in figures), "a figure was saved without its PNG"


@pytest.mark.real
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:  # a fresh run: nothing of the saved outputs may stand in for it
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    monkeypatch.setenv("CIRCUITCUT_SMALL", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    client = nbclient.NotebookClient(notebook, timeout=3600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    # An hour per cell: a shared CPU can be many times slower than an idle one.
    client.execute()  # raises CellExecutionError, with the cell and traceback, on the first failing cell
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")
