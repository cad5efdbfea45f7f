"""Every notebook runs top to bottom on a fresh kernel, offline, with the small budget (CIRCUITCUT_SMALL=1)."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.real
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "commit notebooks stripped"
    monkeypatch.setenv("CIRCUITCUT_SMALL", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    client = nbclient.NotebookClient(notebook, timeout=3600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    # An hour per cell: a shared CPU can be many times slower than an idle one.
    client.execute()  # raises CellExecutionError, with the cell and traceback, on the first failing cell
    assert all(cell.execution_count for cell in code)
