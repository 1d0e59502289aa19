"""The container side of a SageMaker job: runs a keras-albert command with the job's hyperparameters as its flags.

    python -m keras_albert.sagemaker.container [COMMAND] [--flag value ...]

The training image's entry (`container/Dockerfile`); COMMAND defaults to the job's `KERAS_ALBERT_ENTRY_POINT`, and
SageMaker's own `train` argument is ignored. On every host it:
1. reads the job (`keras_albert.sagemaker.environment`: SM_HOSTS, SM_CURRENT_HOST, SM_HPS, SM_CHANNEL_*, or the files
   under /opt/ml/input/config) and turns the hyperparameters into the command's flags (flags after COMMAND win);
2. with several hosts, sets TF_CONFIG for `MultiWorkerMirroredStrategy`, one worker per host (port 2222; a host
   written `name:port` keeps its port, which lets several workers share one machine); under `mpirun` it sets
   nothing and gives the command `--distribution horovod` instead;
3. fills what the flags leave out: pretrain's --output_dir is the checkpoint directory (/opt/ml/checkpoints, which
   SageMaker syncs to the job's checkpoint S3 URI and brings back on a restart, so the run resumes) and
   --train_files the `*.tfrecord` files of the `train` channel (the FSx directory); squad's --output_dir is the
   model directory and its --train_file / --predict_file the channel's train-v2.0.json / dev-v2.0.json (v1.1 for
   squadv1) when they are there;
4. runs the command in this process from the `train` channel's directory (relative paths in flags are relative to
   the FSx directory), so a signal sent to this process reaches the training itself;
5. runs any other command (create-pretraining-data, export, ...) on the first host only;
6. after a pretraining run, on the chief only: copies the run's files (model.keras, tokenizer, settings, summary,
   log) into the model directory (/opt/ml/model, the job's model.tar.gz) and exports the model there as a Hugging
   Face directory, `huggingface/`.

The exit status is the command's (2 for a user's mistake, with a one-line message).
"""

import json
import os
import sys

from keras_albert.distribute import SAGEMAKER_PORT
from keras_albert.errors import UserInputError
from keras_albert.sagemaker import hyperparameters as hp
from keras_albert.sagemaker.environment import read_environment
from keras_albert.sagemaker.spec import DATA_CHANNEL, ENTRY_POINT_VARIABLE

HUGGINGFACE_DIR = "huggingface"
DISTRIBUTED_COMMANDS = ("pretrain", "squad")  # the others run on the first host only
SQUAD_FILES = {"squadv1": ("train-v1.1.json", "dev-v1.1.json"), "squadv2": ("train-v2.0.json", "dev-v2.0.json")}


def _mpi_rank(env):
    """This process's MPI rank (Open MPI or MPICH), or None outside mpirun."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if env.get(name):
            return int(env[name])
    return None


def tf_config(hosts, current_host):
    """TF_CONFIG for one worker per host, this host's index being its position in `hosts`."""
    workers = [host if ":" in host else f"{host}:{SAGEMAKER_PORT}" for host in hosts]
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": hosts.index(current_host)}}


def _data_defaults(command, args, data_dir):
    """Flags pointing the command's data at the FSx channel, for the data flags not given."""
    if data_dir is None:
        return []
    if command == "pretrain" and args.train_files is None:
        return ["--train_files", os.path.join(data_dir, "*.tfrecord")]
    flags = []
    if command == "squad":
        names = SQUAD_FILES.get(args.task_name, ())
        for flag, name in zip(("train_file", "predict_file"), names):
            path = os.path.join(data_dir, name)
            if getattr(args, flag) is None and os.path.isfile(path):
                flags += [f"--{flag}", path]
    return flags


def _output_defaults(command, args, sagemaker):
    if getattr(args, "output_dir", "given") is not None:
        return []
    if command == "pretrain":
        return ["--output_dir", sagemaker.checkpoint_dir]
    if command == "squad":
        return ["--output_dir", sagemaker.model_dir]
    return []


def _distribution_defaults(args, under_mpi):
    if under_mpi and getattr(args, "distribution", "given") in (None, "auto"):
        return ["--distribution", "horovod"]
    return []


def _publish_pretraining(run_dir, model_dir):
    """Copies the run's top-level files into `model_dir` and exports the model there for Hugging Face."""
    from keras_albert import cli
    from keras_albert import io

    if os.path.realpath(run_dir) != os.path.realpath(model_dir):
        for name in sorted(os.listdir(run_dir)):
            path = os.path.join(run_dir, name)
            if os.path.isfile(path) and not name.startswith("."):
                io.copy_file(path, os.path.join(model_dir, name))
    return cli.main(["export", "--checkpoint_path", run_dir, "--output_dir", os.path.join(model_dir, HUGGINGFACE_DIR)])


def _split_command(argv, env):
    if argv[:1] == ["train"]:
        argv = argv[1:]  # SageMaker starts a training image as `docker run IMAGE train`
    if argv and not argv[0].startswith("-"):
        return argv[0], argv[1:]
    command = env.get(ENTRY_POINT_VARIABLE)
    if not command:
        raise UserInputError(f"no command: give one (pretrain, squad, ...) or set {ENTRY_POINT_VARIABLE}")
    return command, argv


def _prepare(argv, env):
    """The command, its full flags and the job's environment, with TF_CONFIG set and the working directory moved."""
    command, extra = _split_command(argv, env)
    if not hp.is_command(command):
        raise UserInputError(f"{command!r} is not a keras-albert command that runs in a job")
    sagemaker = read_environment(env)
    flags = hp.to_flags(command, sagemaker.hyperparameters) + extra
    args = hp.command_parser(command).parse_args(flags)
    under_mpi = _mpi_rank(env) is not None
    data_dir = sagemaker.channels.get(DATA_CHANNEL)
    if data_dir is not None and not os.path.isdir(data_dir):
        raise UserInputError(f"the {DATA_CHANNEL} channel's directory {data_dir} does not exist")
    flags += _data_defaults(command, args, data_dir)
    flags += _output_defaults(command, args, sagemaker)
    flags += _distribution_defaults(args, under_mpi)
    if not under_mpi and len(sagemaker.hosts) > 1 and not env.get("TF_CONFIG"):
        env["TF_CONFIG"] = json.dumps(tf_config(sagemaker.hosts, sagemaker.current_host))
    if data_dir is not None:
        os.chdir(data_dir)
    return command, flags, sagemaker


def main(argv=None, env=None):
    """Runs the job's command here; returns its exit status."""
    from keras_albert import cli

    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        command, flags, sagemaker = _prepare(argv, env)
    except UserInputError as error:
        print(f"keras-albert container: error: {error}", file=sys.stderr)
        return 2
    if command not in DISTRIBUTED_COMMANDS and sagemaker.hosts and sagemaker.current_host != sagemaker.hosts[0]:
        # Two hosts running a data command would write the same files: the first host runs it alone.
        print(f"keras-albert container: {command} runs on {sagemaker.hosts[0]} only", file=sys.stderr)
        return 0
    host = f"host {sagemaker.current_host} of {len(sagemaker.hosts)}" if sagemaker.hosts else "no SageMaker hosts"
    print(f"keras-albert container ({host}): keras-albert {command} {' '.join(flags)}", file=sys.stderr, flush=True)
    status = cli.main([command, *flags])
    if status == 0 and command == "pretrain":
        from keras_albert import distribute

        if distribute.worker_info().is_chief:
            run_dir = hp.command_parser(command).parse_args(flags).output_dir
            status = _publish_pretraining(run_dir, sagemaker.model_dir)
    return status


if __name__ == "__main__":
    sys.exit(main())
