"""`python -m build --wheel` makes a wheel holding the compiled instance builder, the corpus and the modules (a few
seconds: one C file to compile)."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_contains_the_compiled_builder(tmp_path):
    pytest.importorskip("build")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the wheel would (correctly) come without the compiled builder")
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the working tree
    source.mkdir()
    for name in ("setup.py", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    shutil.copytree(
        os.path.join(ROOT, "keras_albert"),
        source / "keras_albert",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"),
    )
    # No build isolation: the isolated environment would download setuptools; this one has it.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "dist" / "*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    prefix = "keras_albert/data/pretraining/_instances."
    assert [name for name in names if name.startswith(prefix) and name.endswith((".so", ".pyd"))], names
    assert "keras_albert/data/pretraining/api.py" in names
    assert "keras_albert/commands/create_pretraining_data.py" in names
    assert "keras_albert/data/corpus/persuasion.txt.gz" in names

