"""The container side of a SageMaker job (`python -m keras_albert.sagemaker.container`): SageMaker's environment
becomes a command line; a pretraining run in a job writes checkpoints where SageMaker syncs them, and the model with
its Hugging Face export where SageMaker packs it; two hosts train together, and a killed job resumes.

The SageMaker environment is made here: `SM_HOSTS` / `SM_CURRENT_HOST` (hosts written `127.0.0.1:port`, so that two
workers share this machine), `SM_HPS`, `SM_CHANNEL_TRAIN`, `SM_MODEL_DIR`, and `KERAS_ALBERT_CHECKPOINT_DIR` for
/opt/ml/checkpoints.
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from fixtures_data import scratch_dir, trained_tokenizer_dir
from multi_worker_harness import free_ports

from keras_albert import cli
from keras_albert.sagemaker import container
from keras_albert.sagemaker import hyperparameters as hp

SEQ, PREDICTIONS, VOCAB = 32, 5, 2000


def _sdk_decoded(hyperparameters):
    """The hyperparameters as SM_HPS holds them: the SDK's container driver JSON-decodes every value it can."""
    decoded = {}
    for name, value in hyperparameters.items():
        try:
            decoded[name] = json.loads(value)
        except json.JSONDecodeError:
            decoded[name] = value
    return decoded


@pytest.mark.parametrize("command,tokens", [
    ("pretrain", ["--train_files", "a.tfrecord", "b.tfrecord", "--total_steps", "1000", "--learning_rate=0.00176",
                  "--quiet", "--skip_sop=false", "--end_learning_rate", "3e-5", "--name", "myfirstjob",
                  "--max_grad_norm", "-1", "--run_name", "007"]),
    ("create-pretraining-data", ["--input", "corpus/*.txt", "--tokenizer", "tok", "--output_dir", "data", "--quiet",
                                 "--no_masking", "--dupe_factor", "2"]),
    ("squad", ["--task_name", "squadv1", "--learning_rate", "5e-5", "--checkpoint_path", "runs/a b/model.keras"]),
])
def test_flags_travel_as_hyperparameters_and_come_back(command, tokens):
    parser = hp.command_parser(command)
    hyperparameters = hp.to_hyperparameters(command, tokens)
    assert all(isinstance(value, str) for value in hyperparameters.values())
    expected = parser.parse_args(tokens)
    # hyperparameters.json holds the strings; SM_HPS the values the SDK's driver decoded.
    assert parser.parse_args(hp.to_flags(command, hyperparameters)) == expected
    assert parser.parse_args(hp.to_flags(command, _sdk_decoded(hyperparameters))) == expected


def test_a_flag_without_value_is_written_alone_or_left_out():
    assert hp.to_flags("create-pretraining-data", {"quiet": True, "no_masking": "false", "dupe_factor": 2}) == [
        "--quiet", "--dupe_factor", "2"]


@pytest.fixture
def job(tmp_path, monkeypatch):
    """A SageMaker environment in a dict (two hosts, this one the second), and the working directory restored."""
    monkeypatch.chdir(tmp_path)
    channel = tmp_path / "fsx"
    channel.mkdir()
    env = {
        "SM_HOSTS": json.dumps(["algo-1", "algo-2"]),
        "SM_CURRENT_HOST": "algo-2",
        "SM_HPS": json.dumps({"model_size": "tiny", "total_steps": 20}),
        "SM_CHANNEL_TRAIN": str(channel),
        "SM_MODEL_DIR": str(tmp_path / "model"),
        "KERAS_ALBERT_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "KERAS_ALBERT_ENTRY_POINT": "pretrain",
    }
    return env, tmp_path


def test_sagemaker_environment_becomes_the_command_line(job):
    env, tmp = job
    command, flags, _ = container._prepare(["train"], env)
    assert command == "pretrain"
    assert flags == ["--model_size", "tiny", "--total_steps", "20", "--train_files", str(tmp / "fsx" / "*.tfrecord"),
                     "--output_dir", str(tmp / "checkpoints")]
    assert json.loads(env["TF_CONFIG"]) == {"cluster": {"worker": ["algo-1:2222", "algo-2:2222"]},
                                            "task": {"type": "worker", "index": 1}}
    assert os.getcwd() == str(tmp / "fsx")  # relative paths in flags are relative to the FSx directory


def test_given_flags_win_over_the_defaults(job):
    env, tmp = job
    env["SM_HPS"] = json.dumps({"train_files": "records/*.tfrecord", "output_dir": "runs/a"})
    env["TF_CONFIG"] = '{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}}'
    command, flags, _ = container._prepare(["pretrain", "--total_steps", "5"], env)
    assert flags == ["--train_files", "records/*.tfrecord", "--output_dir", "runs/a", "--total_steps", "5"]
    assert env["TF_CONFIG"].startswith('{"cluster": {"worker": ["h:1"]}')  # a TF_CONFIG given is kept


def test_under_mpi_the_command_runs_as_horovod_ranks(job):
    env, _ = job
    env["OMPI_COMM_WORLD_RANK"] = "3"
    _, flags, _ = container._prepare([], env)
    assert flags[-2:] == ["--distribution", "horovod"]
    assert "TF_CONFIG" not in env


def test_without_the_sdk_drivers_the_config_files_are_read(tmp_path, monkeypatch):
    """The image's own entry: SageMaker's files under /opt/ml/input/config, no SM_* variables."""
    monkeypatch.chdir(tmp_path)
    config, data = tmp_path / "config", tmp_path / "data"
    config.mkdir()
    (data / "train").mkdir(parents=True)
    for squad_file in ("train-v1.1.json", "dev-v1.1.json"):
        (data / "train" / squad_file).write_text("{}")
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (config / "hyperparameters.json").write_text(json.dumps({"task_name": "squadv1", "total_steps": "10"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"}}))
    env = {"SM_INPUT_CONFIG_DIR": str(config), "SM_INPUT_DATA_DIR": str(data), "SM_MODEL_DIR": str(tmp_path / "m"),
           "KERAS_ALBERT_ENTRY_POINT": "squad"}
    command, flags, sagemaker = container._prepare(["train"], env)
    assert (command, sagemaker.hosts, sagemaker.current_host) == ("squad", ["algo-1"], "algo-1")
    assert flags == ["--task_name", "squadv1", "--total_steps", "10",
                     "--train_file", str(data / "train" / "train-v1.1.json"),
                     "--predict_file", str(data / "train" / "dev-v1.1.json"), "--output_dir", str(tmp_path / "m")]
    assert "TF_CONFIG" not in env  # one host


def test_a_data_command_runs_on_the_first_host_only(job, capsys):
    env, tmp = job
    env["KERAS_ALBERT_ENTRY_POINT"] = "create-pretraining-data"
    env["SM_HPS"] = json.dumps({"input": "no-such-corpus.txt", "tokenizer": "tok", "output_dir": "records"})
    assert container.main(["train"], env) == 0  # algo-2: nothing runs, nothing fails
    assert "create-pretraining-data runs on algo-1 only" in capsys.readouterr().err
    env["SM_CURRENT_HOST"] = "algo-1"
    assert container.main(["train"], env) == 2  # algo-1 runs it (and the corpus is missing)
    assert "no-such-corpus.txt" in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"KERAS_ALBERT_ENTRY_POINT": None}, "no command: give one (pretrain, squad, ...) or set KERAS_ALBERT_ENTRY_POINT"),
    ({"SM_CURRENT_HOST": "algo-9"}, "the current host 'algo-9' is not one of the hosts ['algo-1', 'algo-2']"),
    ({"SM_HPS": '{"total_steps": "x"}'}, "argument --total_steps: invalid int value: 'x'"),
    ({"SM_HPS": "{"}, "SM_HPS is not valid JSON"),
    ({"KERAS_ALBERT_ENTRY_POINT": "launch-sagemaker"}, "'launch-sagemaker' is not a keras-albert command"),
])
def test_a_bad_job_is_one_line_and_status_2(job, capsys, change, message):
    env, _ = job
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    assert container.main(["train"], env) == 2
    error = capsys.readouterr().err
    assert error.startswith("keras-albert container: error: ") and message in error
    assert len(error.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------ real runs


@pytest.fixture(scope="module")
def records():
    """A train channel (an FSx directory): records from `keras-albert create-pretraining-data` on a small text."""
    from fixtures_data import novel_path
    import gzip

    tokenizer = trained_tokenizer_dir("albert", VOCAB)
    channel = scratch_dir("fsx")
    text = os.path.join(scratch_dir("text"), "persuasion-start.txt")
    with gzip.open(novel_path(), "rt", encoding="utf-8") as source, open(text, "w", encoding="utf-8") as target:
        for _, line in zip(range(1500), source):
            target.write(line)
    status = cli.main([
        "create-pretraining-data", "--input", text, "--tokenizer", tokenizer, "--output_dir", channel,
        "--max_seq_length", str(SEQ), "--max_predictions_per_seq", str(PREDICTIONS), "--dupe_factor", "1",
        "--num_shards", "2", "--workers", "1", "--quiet",
    ])
    assert status == 0
    return channel


HYPERPARAMETERS = {"model_type": "albert", "model_size": "tiny", "per_gpu_batch_size": 4,
                   "gradient_accumulation_steps": 2, "warmup_steps": 2, "learning_rate": 0.005, "log_frequency": 2,
                   "checkpoint_frequency": 2, "jit_compile": "false", "quiet": True, "seed": 3}


def test_a_one_host_job_trains_and_publishes_its_model(records, tmp_path, monkeypatch):
    """In this process, as the image's entry runs it: `train` argument, command from the job's environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SM_HPS", json.dumps(dict(HYPERPARAMETERS, total_steps=2)))
    monkeypatch.setenv("SM_CHANNEL_TRAIN", records)
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    monkeypatch.setenv("KERAS_ALBERT_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("KERAS_ALBERT_ENTRY_POINT", "pretrain")
    for name in ("SM_HOSTS", "SM_CURRENT_HOST", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert container.main(["train"]) == 0
    assert os.path.isfile(tmp_path / "checkpoints" / "checkpoints" / "ckpt-2.index")
    summary = json.loads((tmp_path / "model" / "summary.json").read_text())
    assert summary["step"] == 2
    assert os.path.isfile(tmp_path / "model" / "model.keras")
    hf = tmp_path / "model" / "huggingface"
    assert json.loads((hf / "config.json").read_text())["model_type"] == "albert"
    assert os.path.isfile(hf / "model.safetensors")


def _start_hosts(hosts, hyperparameters, channel, root, tag):
    """One container process per host, each with its own checkpoint and model directory (as SageMaker hosts have)."""
    procs = []
    for index, host in enumerate(hosts):
        env = dict(os.environ)
        env.update({
            "SM_HOSTS": json.dumps(hosts), "SM_CURRENT_HOST": host, "SM_HPS": json.dumps(hyperparameters),
            "SM_CHANNEL_TRAIN": channel, "SM_MODEL_DIR": os.path.join(root, f"model-{index}"),
            "KERAS_ALBERT_CHECKPOINT_DIR": os.path.join(root, f"checkpoints-{index}"),
            "KERAS_ALBERT_ENTRY_POINT": "pretrain", "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2",
        })
        env.pop("TF_CONFIG", None)
        log = open(os.path.join(root, f"{tag}-{index}.log"), "w+")
        procs.append((subprocess.Popen([sys.executable, "-m", "keras_albert.sagemaker.container", "train"], env=env,
                                       stdout=log, stderr=subprocess.STDOUT, cwd=root), log))
    return procs


def _logs(procs):
    text = []
    for index, (_, log) in enumerate(procs):
        log.seek(0)
        text.append(f"--- host {index} ---\n{log.read()[-5000:]}")
    return "\n".join(text)


def _wait(procs, timeout):
    deadline = time.monotonic() + timeout
    try:
        for proc, _ in procs:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the hosts did not finish within {timeout} s:\n{_logs(procs)}") from None
    finally:
        _kill(procs)


def _kill(procs):
    for proc, _ in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.large
def test_two_hosts_train_together_and_a_killed_job_resumes(records, tmp_path):
    """Two container processes (hosts 127.0.0.1:port) train albert_tiny under MultiWorkerMirroredStrategy. The job
    is killed (SIGKILL, both hosts) after its first checkpoint; SageMaker would then bring the synced checkpoints
    back to every host, which the test does by copying the chief's checkpoint directory; started again, the job
    resumes from that checkpoint, and only the chief publishes the model. 76-105 s on 2 busy cores: `large`."""
    root = str(tmp_path)
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    hyperparameters = dict(HYPERPARAMETERS, total_steps=12)
    pointer = os.path.join(root, "checkpoints-0", "checkpoints", "checkpoint")

    first = _start_hosts(hosts, hyperparameters, records, root, "first")
    deadline = time.monotonic() + 240
    while not os.path.exists(pointer) and time.monotonic() < deadline and all(p.poll() is None for p, _ in first):
        time.sleep(0.05)
    _kill(first)
    assert os.path.exists(pointer), f"no checkpoint before the kill:\n{_logs(first)}"
    assert not os.path.exists(os.path.join(root, "model-0", "model.keras")), "the first run finished: not killed"
    with open(pointer, encoding="utf-8") as file:
        killed_at = int(file.readline().split("ckpt-")[1].strip().strip('"'))
    assert 2 <= killed_at < 12

    shutil.rmtree(os.path.join(root, "checkpoints-1"), ignore_errors=True)
    shutil.copytree(os.path.join(root, "checkpoints-0"), os.path.join(root, "checkpoints-1"))
    second = _start_hosts(hosts, hyperparameters, records, root, "second")
    _wait(second, timeout=240)
    assert [proc.returncode for proc, _ in second] == [0, 0], _logs(second)

    log = _logs(second)
    assert f"ckpt-{killed_at}: step {killed_at} of 12" in log, log
    summary = json.loads(open(os.path.join(root, "model-0", "summary.json"), encoding="utf-8").read())
    assert summary["initial_step"] == killed_at and summary["step"] == 12
    assert os.path.isfile(os.path.join(root, "checkpoints-0", "checkpoints", "ckpt-12.index"))
    hf = os.path.join(root, "model-0", "huggingface")
    assert os.path.isfile(os.path.join(hf, "config.json")) and os.path.isfile(os.path.join(hf, "model.safetensors"))
    assert not os.path.exists(os.path.join(root, "model-1"))  # only the chief publishes
    settings = json.loads(open(os.path.join(root, "model-0", "settings.json"), encoding="utf-8").read())
    assert settings["num_workers"] == 2, settings
