"""What SageMaker tells a training container: hosts, hyperparameters, data channels, output directories.

Read from the environment variables that SageMaker's container drivers set (`SM_HOSTS`, `SM_CURRENT_HOST`, `SM_HPS`,
`SM_CHANNEL_<NAME>`, `SM_MODEL_DIR`), else from the files SageMaker writes into every training container
(`/opt/ml/input/config/resourceconfig.json`, `hyperparameters.json`, `inputdataconfig.json`), which is what the image's
own entry sees. The directories are SageMaker's documented container paths, each overridable by its variable.
"""

import dataclasses
import json
import os

from keras_albert import io
from keras_albert.errors import UserInputError

INPUT_CONFIG_DIR = "/opt/ml/input/config"
INPUT_DATA_DIR = "/opt/ml/input/data"
MODEL_DIR = "/opt/ml/model"
# CheckpointConfig.LocalPath's default, the directory SageMaker syncs with the job's checkpoint S3 URI. SageMaker
# names it in no variable; this one (ours) lets a local run or a job with another LocalPath move it.
CHECKPOINT_DIR = "/opt/ml/checkpoints"
CHECKPOINT_DIR_VARIABLE = "KERAS_ALBERT_CHECKPOINT_DIR"


@dataclasses.dataclass
class SageMakerEnvironment:
    """This container's place in a SageMaker training job.

    Args:
        hosts: list of str. Every host of the job, in SageMaker's order (empty outside SageMaker).
        current_host: str or None. This host.
        hyperparameters: dict. Name to value: strings from `hyperparameters.json`, JSON-decoded from `SM_HPS`.
        channels: dict of str. Channel name (lower case) to its directory.
        model_dir: str. Written into the job's `model.tar.gz` at the end.
        checkpoint_dir: str. Synced with the job's checkpoint S3 URI.
    """

    hosts: list
    current_host: str
    hyperparameters: dict
    channels: dict
    model_dir: str
    checkpoint_dir: str


def _json_variable(env, name):
    try:
        return json.loads(env[name])
    except json.JSONDecodeError as error:
        raise UserInputError(f"{name} is not valid JSON ({error}). Received: {env[name]!r}") from None


def _config_file(env, name):
    path = os.path.join(env.get("SM_INPUT_CONFIG_DIR", INPUT_CONFIG_DIR), name)
    return io.read_json(path, what=f"SageMaker {name}") if os.path.isfile(path) else None


def _hosts(env):
    if env.get("SM_HOSTS"):
        hosts, current = _json_variable(env, "SM_HOSTS"), env.get("SM_CURRENT_HOST")
        source = "SM_HOSTS"
    else:
        resources = _config_file(env, "resourceconfig.json") or {}
        hosts, current = resources.get("hosts", []), resources.get("current_host")
        source = "resourceconfig.json"
    if not isinstance(hosts, list) or not all(isinstance(host, str) and host for host in hosts):
        raise UserInputError(f"{source} must list host names. Received: {hosts!r}")
    if hosts and current not in hosts:
        raise UserInputError(f"the current host {current!r} is not one of the hosts {hosts} ({source})")
    return hosts, current if hosts else None


def _hyperparameters(env):
    if env.get("SM_HPS"):
        values = _json_variable(env, "SM_HPS")
    else:
        values = _config_file(env, "hyperparameters.json") or {}
    if not isinstance(values, dict):
        raise UserInputError(f"the hyperparameters must be a JSON object. Received: {values!r}")
    return values


def _channels(env):
    prefix = "SM_CHANNEL_"
    channels = {name[len(prefix):].lower(): path for name, path in env.items() if name.startswith(prefix) and path}
    if not channels:
        data_dir = env.get("SM_INPUT_DATA_DIR", INPUT_DATA_DIR)
        names = _config_file(env, "inputdataconfig.json") or {}
        channels = {name.lower(): os.path.join(data_dir, name) for name in names}
    return channels


def read_environment(env=None):
    """The `SageMakerEnvironment` of this container (`os.environ` when `env` is None)."""
    env = os.environ if env is None else env
    hosts, current = _hosts(env)
    return SageMakerEnvironment(
        hosts=hosts,
        current_host=current,
        hyperparameters=_hyperparameters(env),
        channels=_channels(env),
        model_dir=env.get("SM_MODEL_DIR", MODEL_DIR),
        checkpoint_dir=env.get(CHECKPOINT_DIR_VARIABLE, CHECKPOINT_DIR),
    )
