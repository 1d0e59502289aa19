"""The `keras-albert` command's own behaviour (the subcommands have their own tests)."""

import os
import subprocess
import sys


def test_tensorflow_starts_without_its_cpp_chatter():
    # Without the redirect, TensorFlow 2.21 prints absl and CUDA lines here, among them "E0000 ... failed call to
    # cuInit" on a machine without a GPU.
    code = "from keras_albert import cli; cli.start_tensorflow_quietly(); import tensorflow; print('started')"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "started"
    assert result.stderr == "", result.stderr


def test_a_failing_tensorflow_import_shows_what_it_printed(tmp_path):
    # A stand-in tensorflow that writes below Python (as the C++ library does) and then fails to import.
    (tmp_path / "tensorflow.py").write_text("import os\nos.write(2, b'native start-up line\\n')\n"
                                           "raise ImportError('broken build')\n")
    code = "from keras_albert import cli; cli.start_tensorflow_quietly()"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode != 0
    assert "native start-up line" in result.stderr and "ImportError: broken build" in result.stderr
