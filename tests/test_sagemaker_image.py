"""container/Dockerfile, checked without a Docker engine: it copies what the package needs to install, installs it,
and its entry command exists and starts as SageMaker starts it (`docker run IMAGE train`).

The package is built into a wheel from exactly the files the Dockerfile copies, as `pip install .` does in the image.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(ROOT, "container", "Dockerfile")
ENTRY_MODULE = "keras_albert.sagemaker.container"


def _instructions():
    with open(DOCKERFILE, encoding="utf-8") as file:
        text = re.sub(r"\\\n", " ", file.read())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [tuple(line.split(None, 1)) for line in lines]


def _all(keyword):
    return [argument for instruction, argument in _instructions() if instruction.upper() == keyword]


def _copied():
    """The paths the Dockerfile copies from the build context (the repository root)."""
    paths = []
    for argument in _all("COPY"):
        sources = argument.split()[:-1]
        paths += [source for source in sources if not source.startswith("--")]
    return paths


def test_the_dockerfile_copies_existing_files_and_installs_the_package():
    copied = _copied()
    for path in copied:
        assert os.path.exists(os.path.join(ROOT, path)), f"COPY {path}: no such file in the repository"
    assert {"setup.py", "setup.cfg", "pyproject.toml", "keras_albert"} <= set(copied)
    installs = [run for run in _all("RUN") if re.search(r"\bpip install (?:\S+ )*\.(?:\s|$)", run)]
    assert installs, "no RUN pip install . in the Dockerfile"
    assert "scripts/build_horovod.sh" in " ".join(_all("RUN"))
    assert os.path.isfile(os.path.join(ROOT, "scripts", "build_horovod.sh"))


def test_the_entry_is_the_container_module_under_tini_given_train():
    (entrypoint,) = _all("ENTRYPOINT")
    (cmd,) = _all("CMD")
    entry = json.loads(entrypoint)
    assert entry[:2] == ["/usr/bin/tini", "--"]  # signals reach the training process
    assert entry[2:] == ["python3", "-m", ENTRY_MODULE]
    assert json.loads(cmd) == ["train"]


def test_the_entry_command_starts_as_sagemaker_starts_it(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SM_", "KERAS_ALBERT_"))}
    env["SM_INPUT_CONFIG_DIR"] = str(tmp_path)  # no job: no config files either
    shown = subprocess.run([sys.executable, "-m", ENTRY_MODULE, "--help"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert shown.returncode == 0 and "KERAS_ALBERT_ENTRY_POINT" in shown.stdout
    started = subprocess.run([sys.executable, "-m", ENTRY_MODULE, "train"], capture_output=True, text=True, env=env,
                             timeout=120, cwd=tmp_path)
    assert started.returncode == 2
    assert started.stderr.strip() == ("keras-albert container: error: no command: give one (pretrain, squad, ...) or "
                                      "set KERAS_ALBERT_ENTRY_POINT")


def test_the_copied_files_build_a_wheel_with_the_entry_and_the_compiled_builder(tmp_path):
    pytest.importorskip("build")
    context = tmp_path / "context"
    context.mkdir()
    for path in _copied():
        source, target = os.path.join(ROOT, path), context / path
        if os.path.isdir(source):
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info"))
        else:
            shutil.copy2(source, target)
    result = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
                            cwd=context, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = [name for name in os.listdir(tmp_path) if name.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "keras_albert/sagemaker/container.py" in names
    assert any(re.match(r"keras_albert/.*_instances.*\.so$", name) for name in names), "no compiled builder"
    assert "keras-albert = keras_albert.cli:main" in entry_points
