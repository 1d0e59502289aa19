"""The SageMaker training job that `keras-albert launch-sagemaker` describes.

`job_spec(values, training_flags)` reads the launcher's flags (their defaults from the 2020 reference's environment
variables), checks them once and turns the remaining flags into hyperparameters; `model_trainer(spec, session)`
builds the SageMaker SDK's `ModelTrainer` for it. The SDK is imported only there, so the rest of keras-albert never
needs it.

What runs in the job:
- a keras-albert command (`--entry_point pretrain`): the image's entry, `python -m keras_albert.sagemaker.container`
  (under `tini`, so SageMaker's SIGTERM reaches the training process), told the command by the job's environment
  (`KERAS_ALBERT_ENTRY_POINT`); nothing is uploaded. With `--source_dir`, that directory is uploaded and the same
  entry runs from it through the SDK's container driver, so a `keras_albert` package inside it (a checkout) is the
  one imported.
- a script inside `--source_dir` (`--entry_point examples/run_pretraining.py`): the SDK's driver runs it with the
  hyperparameters as `--name value` arguments.
- `--distribution mpi`: the SDK's MPI driver starts `mpirun` over every host (`--processes_per_host` each); a
  keras-albert command then runs as Horovod ranks (`--distribution horovod` of the command).

The FSx for Lustre file system is the `train` channel (`/opt/ml/input/data/train`, mounted read-write so runs can
keep outputs there too); `/opt/ml/checkpoints` is synced to `--checkpoint_s3_uri`, so a spot restart finds its
checkpoints; `/opt/ml/model` becomes the job's `model.tar.gz` under `--output_s3_uri`.
"""

import dataclasses
import os
import posixpath
import re

from keras_albert.errors import UserInputError
from keras_albert.sagemaker import hyperparameters as hp

# flag -> the reference's environment variable that gives its default
ENVIRONMENT_DEFAULTS = {
    "role": "SAGEMAKER_ROLE",
    "image_name": "SAGEMAKER_IMAGE_NAME",
    "fsx_id": "SAGEMAKER_FSX_ID",
    "fsx_mount_name": "SAGEMAKER_FSX_MOUNT_NAME",
    "subnet_ids": "SAGEMAKER_SUBNET_IDS",
    "security_group_ids": "SAGEMAKER_SECURITY_GROUP_IDS",
}
DISTRIBUTIONS = ("multi_worker", "mpi")
DATA_CHANNEL = "train"
FSX_ACCESS_MODE = "rw"
ENTRY_POINT_VARIABLE = "KERAS_ALBERT_ENTRY_POINT"
CONTAINER_COMMAND = "python3 -m keras_albert.sagemaker.container"
MPI_ENTRY_SCRIPT = "keras_albert_entry.py"
# Not uploaded with --source_dir: the SDK's own list, and a checkout's virtual environments, build leftovers and runs.
IGNORE_PATTERNS = [".env", ".git", "__pycache__", ".DS_Store", ".cache", ".ipynb_checkpoints", ".venv", "venv",
                   "*.egg-info", ".pytest_cache", "runs", "keras-albert-quickstart"]
DEFAULT_MAX_RUN = 24 * 3600
# SageMaker's job names: letters, digits and hyphens, at most 63 characters; the SDK appends a 15-character
# timestamp and a hyphen to the base name.
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,46}$")


@dataclasses.dataclass
class JobSpec:
    """One SageMaker training job: what runs, where, for how long, with which flags.

    Args:
        entry_point: str. A keras-albert command (`pretrain`, `squad`, ...) or a script path inside `source_dir`.
        role: str. IAM role ARN (or name) the job runs as.
        image_name: str. The training image (built from `container/Dockerfile`).
        fsx_id: str. FSx for Lustre file system id, mounted as the `train` channel.
        fsx_mount_name: str. The file system's mount name.
        subnet_ids: list of str. VPC subnets (FSx is reached through the VPC).
        security_group_ids: list of str. VPC security groups.
        sm_job_name: str. Base name of the job (SageMaker's name adds a timestamp).
        source_dir: str or None. Local directory uploaded with the job.
        instance_type: str. Any `ml.*` instance type.
        instance_count: int. Number of hosts.
        fsx_directory: str. Directory on the file system that the channel mounts.
        spot: bool. Managed spot training.
        max_run: int. Seconds the job may run.
        max_wait: int or None. Seconds a spot job may take in all, waiting for capacity included.
        checkpoint_s3_uri: str or None. Where `/opt/ml/checkpoints` is synced (default: the SDK's, per job).
        output_s3_uri: str or None. Where `model.tar.gz` goes (default: the SDK's default bucket).
        distribution: str. `multi_worker` (one TensorFlow worker per host) or `mpi`.
        processes_per_host: int or None. MPI processes per host (default: one per GPU).
        hyperparameters: dict of str. The entry point's flags.
    """

    entry_point: str
    role: str
    image_name: str
    fsx_id: str
    fsx_mount_name: str
    subnet_ids: list
    security_group_ids: list
    sm_job_name: str = "keras-albert"
    source_dir: str = None
    instance_type: str = "ml.p4d.24xlarge"
    instance_count: int = 1
    fsx_directory: str = "/"
    spot: bool = False
    max_run: int = DEFAULT_MAX_RUN
    max_wait: int = None
    checkpoint_s3_uri: str = None
    output_s3_uri: str = None
    distribution: str = "multi_worker"
    processes_per_host: int = None
    hyperparameters: dict = dataclasses.field(default_factory=dict)

    @property
    def runs_command(self):
        return hp.is_command(self.entry_point)

    @property
    def fsx_directory_path(self):
        """The channel's `DirectoryPath`: FSx for Lustre paths start with the file system's mount name."""
        return posixpath.normpath(f"/{self.fsx_mount_name.strip('/')}/{self.fsx_directory.lstrip('/')}")


def _comma_list(text):
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _required(values, env, name):
    value = values.get(name) or env.get(ENVIRONMENT_DEFAULTS[name])
    if not value:
        raise UserInputError(f"--{name} is required (or set {ENVIRONMENT_DEFAULTS[name]})")
    return value


def _check(condition, message):
    if not condition:
        raise UserInputError(message)


def job_spec(values, training_flags=(), env=None):
    """The `JobSpec` of the launcher's flags.

    Args:
        values: dict. The launcher's parsed flags (`vars(args)`); None means not given.
        training_flags: list of str. Every other flag, as typed: the entry point's flags.
        env: mapping or None. Where the reference's variables are read (`os.environ` when None).

    Raises:
        UserInputError: one line naming the flag (and its environment variable) that is missing or wrong.
    """
    env = os.environ if env is None else env
    entry_point = values.get("entry_point")
    _check(entry_point, "--entry_point is required: a keras-albert command (pretrain, squad) or a script path")
    required = {name: _required(values, env, name) for name in ENVIRONMENT_DEFAULTS}
    spec = JobSpec(
        entry_point=entry_point,
        role=required["role"],
        image_name=required["image_name"],
        fsx_id=required["fsx_id"],
        fsx_mount_name=required["fsx_mount_name"],
        subnet_ids=_comma_list(required["subnet_ids"]),
        security_group_ids=_comma_list(required["security_group_ids"]),
        **{
            field.name: values[field.name]
            for field in dataclasses.fields(JobSpec)
            if values.get(field.name) is not None and field.name not in required and field.name != "entry_point"
        },
    )
    _check_spec(spec)
    spec.hyperparameters = hp.to_hyperparameters(spec.entry_point, list(training_flags))
    return spec


def _check_spec(spec):
    for name in ("subnet_ids", "security_group_ids"):
        _check(getattr(spec, name), f"--{name} lists no id (or set {ENVIRONMENT_DEFAULTS[name]})")
    _check(spec.instance_type.startswith("ml."),
           f"--instance_type must be an ml.* type. Received: {spec.instance_type}")
    _check(spec.instance_count >= 1, f"--instance_count must be >= 1. Received: {spec.instance_count}")
    _check(_JOB_NAME.match(spec.sm_job_name), "--sm_job_name must be letters, digits and hyphens, at most 47 "
           f"characters (SageMaker adds a timestamp). Received: {spec.sm_job_name!r}")
    _check(spec.distribution in DISTRIBUTIONS,
           f"--distribution must be one of {', '.join(DISTRIBUTIONS)}. Received: {spec.distribution!r}")
    _check(spec.max_run >= 1, f"--max_run must be >= 1 second. Received: {spec.max_run}")
    if spec.processes_per_host is not None:
        _check(spec.processes_per_host >= 1, f"--processes_per_host must be >= 1. Received: {spec.processes_per_host}")
        _check(spec.distribution == "mpi" or spec.processes_per_host == 1,
               "--processes_per_host applies to --distribution mpi; multi_worker runs one worker per host "
               "(over all of its GPUs)")
    if spec.max_wait is not None:
        _check(spec.spot, "--max_wait applies to spot jobs: add --spot")
        _check(spec.max_wait >= spec.max_run,
               f"--max_wait ({spec.max_wait}) must be >= --max_run ({spec.max_run}): it counts the run too")
    elif spec.spot:
        spec.max_wait = 2 * spec.max_run
    for name in ("checkpoint_s3_uri", "output_s3_uri"):
        value = getattr(spec, name)
        _check(value is None or value.startswith("s3://"), f"--{name} must be an s3:// URI. Received: {value!r}")
    if not spec.runs_command:
        spec.source_dir = spec.source_dir or "."
    if spec.source_dir is not None:
        _check(os.path.isdir(spec.source_dir), f"--source_dir: {spec.source_dir} is not a directory")
    if spec.runs_command:
        _check(spec.distribution != "mpi" or spec.source_dir is None,
               "--source_dir with --distribution mpi needs a script as --entry_point (e.g. "
               "examples/run_pretraining.py); a keras-albert command runs from the image")
    else:
        script = os.path.join(spec.source_dir, spec.entry_point)
        _check(os.path.isfile(script) and spec.entry_point.endswith((".py", ".sh")),
               f"--entry_point: {spec.entry_point} is neither a keras-albert command nor a .py/.sh script "
               f"inside --source_dir {spec.source_dir}")


def _mpi_entry_dir(directory):
    """A source directory holding one script that runs the container entry (the SDK's MPI driver runs a script)."""
    path = os.path.join(directory, MPI_ENTRY_SCRIPT)
    with open(path, "w", encoding="utf-8") as file:
        file.write(
            '"""Runs the keras-albert command named by KERAS_ALBERT_ENTRY_POINT (one MPI rank)."""\n'
            "import sys\n\n"
            "from keras_albert.sagemaker import container\n\n"
            "# The MPI driver also passes the hyperparameters as arguments; the container reads them from SM_HPS.\n"
            "sys.exit(container.main([]))\n"
        )
    return directory


def model_trainer(spec, session, scratch_dir):
    """The SageMaker SDK's `ModelTrainer` for `spec`.

    Args:
        spec: `JobSpec`.
        session: `sagemaker.core.helper.session_helper.Session`.
        scratch_dir: str. A directory that lives until the job is created (for the MPI entry script).
    """
    from sagemaker.core.training import configs
    from sagemaker.train.distributed import MPI
    from sagemaker.train.model_trainer import ModelTrainer

    environment = {}
    distributed = None
    if spec.distribution == "mpi":
        distributed = MPI(process_count_per_node=spec.processes_per_host)
    if spec.runs_command:
        environment[ENTRY_POINT_VARIABLE] = spec.entry_point
        if distributed is not None:
            source_code = configs.SourceCode(source_dir=_mpi_entry_dir(scratch_dir), entry_script=MPI_ENTRY_SCRIPT)
        elif spec.source_dir is not None:
            source_code = configs.SourceCode(
                source_dir=spec.source_dir, command=CONTAINER_COMMAND, ignore_patterns=IGNORE_PATTERNS
            )
        else:
            source_code = None  # the image's own entry
    else:
        source_code = configs.SourceCode(
            source_dir=spec.source_dir, entry_script=spec.entry_point, ignore_patterns=IGNORE_PATTERNS
        )

    fsx = configs.FileSystemDataSource(
        file_system_id=spec.fsx_id,
        file_system_type="FSxLustre",
        directory_path=spec.fsx_directory_path,
        file_system_access_mode=FSX_ACCESS_MODE,
    )
    output = None
    if spec.output_s3_uri:
        output = configs.OutputDataConfig(s3_output_path=spec.output_s3_uri, compression_type="GZIP")
    return ModelTrainer(
        sagemaker_session=session,
        role=spec.role,
        training_image=spec.image_name,
        base_job_name=spec.sm_job_name,
        source_code=source_code,
        distributed=distributed,
        compute=configs.Compute(
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            enable_managed_spot_training=spec.spot,
        ),
        networking=configs.Networking(subnets=spec.subnet_ids, security_group_ids=spec.security_group_ids),
        stopping_condition=configs.StoppingCondition(
            max_runtime_in_seconds=spec.max_run, max_wait_time_in_seconds=spec.max_wait
        ),
        checkpoint_config=configs.CheckpointConfig(s3_uri=spec.checkpoint_s3_uri),
        output_data_config=output,
        input_data_config=[configs.InputData(channel_name=DATA_CHANNEL, data_source=fsx)],
        hyperparameters=dict(spec.hyperparameters),
        environment=environment,
    )
