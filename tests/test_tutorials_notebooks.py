"""Tutorials 01-05 run as notebooks: converted with jupytext, executed by nbclient on an IPython
kernel in fast mode, and each shows at least one figure inline (an image/png cell output).

This is the path a learner takes with `jupytext --to notebook`; it catches what the script run
cannot (code that needs `__file__`, figures that are saved but never displayed). Skips when the
notebook tools (the `test` extra: jupytext, nbclient, nbformat, ipykernel) are not installed.
"""

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = ["01_autograd_from_scratch.py", "02_sign_and_pseudo_gradients.py",
             "03_train_a_binary_network.py", "04_xnor_popcount_and_bitpacking.py",
             "05_export_and_packed_inference.py"]


def _images(notebook) -> int:
    return sum("image/png" in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_runs_as_a_notebook_and_shows_a_figure(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIBNN_FAST", "1")
    monkeypatch.setenv("MINIBNN_FIGURES", str(tmp_path / "figures"))   # never the source tree
    monkeypatch.delenv("MPLBACKEND", raising=False)                    # the kernel's inline one
    notebook = jupytext.read(TUTORIALS / name)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{name} failed as a notebook:\n{str(err)[-3000:]}")
    assert _images(notebook) >= 1, f"{name} ran as a notebook but displayed no figure inline"
    assert list((tmp_path / "figures").glob("*.png")), "MINIBNN_FIGURES was not honoured"
