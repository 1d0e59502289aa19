"""notebooks/: committed executed, with their plots as embedded PNGs; each one runs to the end in a kernel of this
environment (large: minutes each)."""

import json
import os
import shutil
import sys

import pytest

NOTEBOOKS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NOTEBOOKS = ("01_quickstart.ipynb", "02_finetune_huggingface_checkpoint.ipynb", "03_pretrain_multi_worker.ipynb")


def _outputs(notebook):
    return [output for cell in notebook["cells"] if cell["cell_type"] == "code" for output in cell.get("outputs", [])]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_executed_with_its_plots(name):
    import nbformat

    notebook = nbformat.read(os.path.join(NOTEBOOKS_DIR, name), as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells and all(cell.get("execution_count") for cell in code_cells), "not executed in full"
    assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1)), "not run in order"
    outputs = _outputs(notebook)
    assert not [output for output in outputs if output.get("output_type") == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs), "no embedded PNG plot"


def _kernel_in_this_environment(tmp_path):
    """A kernelspec that starts this interpreter, so the notebook runs against the package under test whatever
    kernels the machine has installed."""
    directory = tmp_path / "jupyter" / "kernels" / "keras-albert-test"
    directory.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "keras-albert test", "language": "python"}
    (directory / "kernel.json").write_text(json.dumps(spec))
    return str(tmp_path / "jupyter")


@pytest.mark.large
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", _kernel_in_this_environment(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' tempfile.mkdtemp work folders land here
    path = tmp_path / name
    shutil.copy(os.path.join(NOTEBOOKS_DIR, name), path)
    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(notebook, timeout=1200, kernel_name="keras-albert-test",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    outputs = _outputs(notebook)
    assert not [output for output in outputs if output.get("output_type") == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs)
