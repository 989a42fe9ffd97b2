"""docs/tutorial.ipynb runs top to bottom in a real Jupyter kernel, and is committed without outputs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_the_committed_notebook_holds_no_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in nb["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell["outputs"] and cell["execution_count"] is None for cell in code)


@pytest.mark.slow
def test_the_tutorial_runs_top_to_bottom_in_a_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat (in dcgan[test])")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient (in dcgan[test])")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel (in dcgan[test])")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    # the kernel inherits this process's environment (PYTHONPATH, DCGAN_CACHE_DIR) and runs in tmp_path
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    print(f"the tutorial ran in {time.perf_counter() - start:.1f} s")
    nbformat.write(nb, tmp_path / "executed.ipynb")  # to look at
    outputs = [cell.get("outputs", []) for cell in nb.cells if cell.cell_type == "code"]
    images = sum(1 for cell in outputs for out in cell if "image/png" in out.get("data", {}))
    assert images >= 6  # grid, losses, samples, walk, arithmetic, pretrained samples
    text = "".join(out.get("text", "") for cell in outputs for out in cell if out.get("output_type") == "stream")
    assert "last: step 1000" in text and "FID" in text and "[True, True]" in text
    assert not any(out.get("output_type") == "error" for cell in outputs for out in cell)
