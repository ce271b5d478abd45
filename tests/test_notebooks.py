"""Every notebook in notebooks/ runs top to bottom, headless, with no error, and shows its figures."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Figures each notebook must show (PNG outputs), so a silently empty plot fails too.
MIN_FIGURES = {"explain": 1, "audit": 4, "deploy": 1, "drift": 4}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MIN_FIGURES))
def test_notebook_runs_headless(name, tmp_path, monkeypatch):
    if name == "drift":
        pytest.importorskip("nncf", reason="the drift notebook quantizes: the quantize extra (NNCF) is not installed")
    monkeypatch.setenv("OV_EXPLAIN_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "notebooks are committed without outputs"
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    figures = [base64.b64decode(output["data"]["image/png"]) for cell in notebook.cells
               if cell.cell_type == "code" for output in cell.outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= MIN_FIGURES[name]
    for index, figure in enumerate(figures):
        assert figure[:8] == b"\x89PNG\r\n\x1a\n" and len(figure) > 10_000
        (tmp_path / f"{name}_{index}.png").write_bytes(figure)
    text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)
    assert "Traceback" not in text
    if name == "explain":
        assert "cam hottest pixel on the cup: True" in text
    if name == "audit":
        assert "7 images with cam" in text and "True_positive_two_predictions      1" in text
    if name == "drift":
        assert "7 images: top-1 agreement" in text and ("deploy" in text or "hold: " in text)
    if name == "deploy":
        assert "inferences: 1" in text and "tripod" in text
