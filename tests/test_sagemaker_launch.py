"""`keras-albert launch-sagemaker` against moto's in-process AWS: the job SageMaker records is the one the flags say.

No network: moto answers every AWS call inside the process (`mock_aws`; a moto server on a port would not do, since
the SDK calls STS at its regional endpoint whatever AWS_ENDPOINT_URL says), a guard refuses any socket connection,
the SDK's role check (iam:SimulatePrincipalPolicy, which moto lacks) is off through SAGEMAKER_VALIDATE_ROLE=false and
its telemetry through a config file named by SAGEMAKER_USER_CONFIG_OVERRIDE. moto keeps most of CreateTrainingJob but
drops the environment, so the request itself is also captured, by a botocore event hook on boto3's default session
(the one the launcher uses).
"""

import json
import socket

import pytest

pytest.importorskip("sagemaker.train.model_trainer")
moto = pytest.importorskip("moto")

import boto3  # noqa: E402

from keras_albert import cli  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/AmazonSageMaker-ExecutionRole-20200101T123"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/keras-albert:tf2.21"
FSX_ID = "fs-0123456789abcdef0"
REFERENCE_VARIABLES = ("SAGEMAKER_ROLE", "SAGEMAKER_IMAGE_NAME", "SAGEMAKER_FSX_ID", "SAGEMAKER_FSX_MOUNT_NAME",
                       "SAGEMAKER_SUBNET_IDS", "SAGEMAKER_SECURITY_GROUP_IDS")
TRAINING_FLAGS = ["--load_from=scratch", "--model_type", "albert", "--model_size", "base", "--total_steps", "1000",
                  "--learning_rate=0.00176", "--train_files", "wiki/a.tfrecord", "wiki/b.tfrecord", "--quiet"]
HYPERPARAMETERS = {"load_from": "scratch", "model_type": "albert", "model_size": "base", "total_steps": "1000",
                   "learning_rate": "0.00176", "train_files": '["wiki/a.tfrecord", "wiki/b.tfrecord"]', "quiet": "true"}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"the test tried to reach the network: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def quiet_sdk(tmp_path, monkeypatch):
    """The SDK with telemetry off, no role check and no user's AWS configuration; the reference's variables unset."""
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in REFERENCE_VARIABLES + ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(quiet_sdk, no_network, monkeypatch):
    """moto's AWS in this process, fake credentials, and the CreateTrainingJob requests boto3's default session sent."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        boto3.setup_default_session(region_name=REGION)
        requests = []
        boto3.DEFAULT_SESSION.events.register(
            "provide-client-params.sagemaker.CreateTrainingJob", lambda params, **kwargs: requests.append(params)
        )
        try:
            yield boto3.DEFAULT_SESSION, requests
        finally:
            boto3.DEFAULT_SESSION = None


def _launch(*argv):
    return cli.main(["launch-sagemaker", *argv])


def _only_job(session):
    client = session.client("sagemaker")
    jobs = client.list_training_jobs()["TrainingJobSummaries"]
    assert len(jobs) == 1, jobs
    return client.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])


def _channel(job, name):
    return next(channel for channel in job["InputDataConfig"] if channel["ChannelName"] == name)


def _s3_text(session, uri, name):
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    body = session.client("s3").get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read()
    return body.decode("utf-8")


def test_every_flag_reaches_the_training_job(aws, tmp_path, capsys):
    session, requests = aws
    source = tmp_path / "src"
    (source / "keras_albert").mkdir(parents=True)
    (source / "keras_albert" / "marker.py").write_text("# a checkout's package\n")
    status = _launch(
        "--source_dir", str(source), "--entry_point", "pretrain", "--sm_job_name", "albert-pretrain",
        "--instance_type", "ml.p4d.24xlarge", "--instance_count", "2", "--role", ROLE, "--image_name", IMAGE,
        "--fsx_id", FSX_ID, "--fsx_mount_name", "abcdefgh", "--fsx_directory", "/albert/records-512",
        "--subnet_ids", "subnet-0a1,subnet-0b2", "--security_group_ids", "sg-123,sg-456", "--spot",
        "--max_run", "7200", "--max_wait", "10800", "--checkpoint_s3_uri", "s3://runs/albert-base/checkpoints",
        "--output_s3_uri", "s3://runs/albert-base/output", "--distribution", "multi_worker",
        "--processes_per_host", "1", "--wait", *TRAINING_FLAGS,
    )
    assert status == 0
    job = _only_job(session)
    assert job["TrainingJobName"].startswith("albert-pretrain-")
    assert f"created SageMaker training job {job['TrainingJobName']}" in capsys.readouterr().out
    assert job["RoleArn"] == ROLE
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["HyperParameters"] == HYPERPARAMETERS
    assert _channel(job, "train")["DataSource"] == {"FileSystemDataSource": {
        "FileSystemId": FSX_ID, "FileSystemType": "FSxLustre", "DirectoryPath": "/abcdefgh/albert/records-512",
        "FileSystemAccessMode": "rw"}}
    assert job["VpcConfig"] == {"Subnets": ["subnet-0a1", "subnet-0b2"], "SecurityGroupIds": ["sg-123", "sg-456"]}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800}
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"] == {"S3Uri": "s3://runs/albert-base/checkpoints", "LocalPath": "/opt/ml/checkpoints"}
    assert job["OutputDataConfig"]["S3OutputPath"] == "s3://runs/albert-base/output"

    # The source directory was uploaded, and the SDK's driver runs the container entry from it.
    code = _channel(job, "code")["DataSource"]["S3DataSource"]["S3Uri"]
    assert _s3_text(session, code, "keras_albert/marker.py") == "# a checkout's package\n"
    drivers = _channel(job, "sm_drivers")["DataSource"]["S3DataSource"]["S3Uri"]
    assert json.loads(_s3_text(session, drivers, "sourcecode.json"))["command"] == (
        "python3 -m keras_albert.sagemaker.container")
    # What moto does not keep, on the request itself.
    (request,) = requests
    assert request["Environment"] == {"KERAS_ALBERT_ENTRY_POINT": "pretrain"}
    assert request["HyperParameters"] == HYPERPARAMETERS


def test_the_reference_environment_variables_are_the_defaults(aws, monkeypatch):
    session, requests = aws
    monkeypatch.setenv("SAGEMAKER_ROLE", ROLE)
    monkeypatch.setenv("SAGEMAKER_IMAGE_NAME", IMAGE)
    monkeypatch.setenv("SAGEMAKER_FSX_ID", FSX_ID)
    monkeypatch.setenv("SAGEMAKER_FSX_MOUNT_NAME", "mnt1")
    monkeypatch.setenv("SAGEMAKER_SUBNET_IDS", "subnet-1")
    monkeypatch.setenv("SAGEMAKER_SECURITY_GROUP_IDS", "sg-1, sg-2")
    status = _launch("--entry_point", "squad", "--sm_job_name", "albert-squad", "--instance_type", "ml.g5.2xlarge",
                     "--task_name=squadv2", "--per_gpu_batch_size=6", "--total_steps=8144")
    assert status == 0
    job = _only_job(session)
    assert job["RoleArn"] == ROLE
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge" and job["ResourceConfig"]["InstanceCount"] == 1
    assert job["HyperParameters"] == {"task_name": "squadv2", "per_gpu_batch_size": "6", "total_steps": "8144"}
    assert job["InputDataConfig"] == [{"ChannelName": "train", "DataSource": {"FileSystemDataSource": {
        "FileSystemId": FSX_ID, "FileSystemType": "FSxLustre", "DirectoryPath": "/mnt1",
        "FileSystemAccessMode": "rw"}}}]  # nothing uploaded: the image's own entry runs
    assert job["VpcConfig"] == {"Subnets": ["subnet-1"], "SecurityGroupIds": ["sg-1", "sg-2"]}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert not job.get("EnableManagedSpotTraining")
    (request,) = requests
    assert "ContainerEntrypoint" not in request["AlgorithmSpecification"]
    assert request["Environment"] == {"KERAS_ALBERT_ENTRY_POINT": "squad"}


def test_mpi_runs_the_command_through_the_sdk_mpi_driver(aws):
    session, requests = aws
    status = _launch("--entry_point", "pretrain", "--role", ROLE, "--image_name", IMAGE, "--fsx_id", FSX_ID,
                     "--fsx_mount_name", "m", "--subnet_ids", "subnet-1", "--security_group_ids", "sg-1",
                     "--instance_count", "2", "--distribution", "mpi", "--processes_per_host", "8",
                     "--total_steps", "10")
    assert status == 0
    job = _only_job(session)
    drivers = _channel(job, "sm_drivers")["DataSource"]["S3DataSource"]["S3Uri"]
    assert json.loads(_s3_text(session, drivers, "distributed.json"))["process_count_per_node"] == 8
    assert "mpi_driver.py" in _s3_text(session, drivers, "sm_train.sh")
    code = _channel(job, "code")["DataSource"]["S3DataSource"]["S3Uri"]
    assert "container.main([])" in _s3_text(session, code, "keras_albert_entry.py")
    assert requests[0]["Environment"] == {"KERAS_ALBERT_ENTRY_POINT": "pretrain"}


def test_a_script_entry_point_runs_from_the_source_dir(aws, tmp_path):
    session, requests = aws
    (tmp_path / "albert").mkdir()
    (tmp_path / "albert" / "run_pretraining.py").write_text("print('hello')\n")
    status = _launch("--source_dir", str(tmp_path), "--entry_point", "albert/run_pretraining.py", "--role", ROLE,
                     "--image_name", IMAGE, "--fsx_id", FSX_ID, "--fsx_mount_name", "m", "--subnet_ids", "subnet-1",
                     "--security_group_ids", "sg-1", "--any_flag_of_the_script", "7")
    assert status == 0
    job = _only_job(session)
    assert job["HyperParameters"] == {"any_flag_of_the_script": "7"}  # a script's flags are its own business
    drivers = _channel(job, "sm_drivers")["DataSource"]["S3DataSource"]["S3Uri"]
    assert json.loads(_s3_text(session, drivers, "sourcecode.json"))["entry_script"] == "albert/run_pretraining.py"
    code = _channel(job, "code")["DataSource"]["S3DataSource"]["S3Uri"]
    assert _s3_text(session, code, "albert/run_pretraining.py") == "print('hello')\n"
    assert "Environment" not in requests[0] or not requests[0]["Environment"]


def test_dry_run_prints_the_request_and_sends_nothing(quiet_sdk, no_network, capsys):
    """No moto and no credentials: any request would fail (and the socket guard would say so)."""
    status = _launch("--entry_point", "pretrain", "--sm_job_name", "albert-pretrain", "--role", ROLE,
                     "--image_name", IMAGE, "--fsx_id", FSX_ID, "--fsx_mount_name", "abcdefgh",
                     "--fsx_directory", "records", "--subnet_ids", "subnet-1", "--security_group_ids", "sg-1",
                     "--instance_count", "4", "--spot", "--max_run", "3600", "--dry_run", *TRAINING_FLAGS)
    assert status == 0
    request = json.loads(capsys.readouterr().out)
    assert request["TrainingJobName"].startswith("albert-pretrain-")
    assert request["HyperParameters"] == HYPERPARAMETERS
    assert request["ResourceConfig"]["InstanceCount"] == 4
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert request["EnableManagedSpotTraining"] is True
    assert request["InputDataConfig"][0]["DataSource"]["FileSystemDataSource"]["DirectoryPath"] == "/abcdefgh/records"
    assert request["Environment"] == {"KERAS_ALBERT_ENTRY_POINT": "pretrain"}
    # The SDK's defaults, named without asking AWS: the default bucket of the role's account.
    assert request["OutputDataConfig"]["S3OutputPath"] == f"s3://sagemaker-{REGION}-{ACCOUNT}/albert-pretrain"


def test_dry_run_with_uploads_names_them_without_uploading(quiet_sdk, no_network, tmp_path, capsys):
    (tmp_path / "train.py").write_text("pass\n")
    status = _launch("--source_dir", str(tmp_path), "--entry_point", "train.py", "--role", ROLE, "--image_name", IMAGE,
                     "--fsx_id", FSX_ID, "--fsx_mount_name", "m", "--subnet_ids", "s-1", "--security_group_ids", "g-1",
                     "--dry_run")
    assert status == 0
    request = json.loads(capsys.readouterr().out)
    uris = {c["ChannelName"]: c["DataSource"].get("S3DataSource", {}).get("S3Uri") for c in request["InputDataConfig"]}
    assert uris["code"].startswith(f"s3://sagemaker-{REGION}-{ACCOUNT}/keras-albert/")
    assert uris["sm_drivers"].endswith("/input/sm_drivers")


@pytest.mark.parametrize("missing,variable", [("--role", "SAGEMAKER_ROLE"), ("--image_name", "SAGEMAKER_IMAGE_NAME"),
                                              ("--fsx_id", "SAGEMAKER_FSX_ID")])
def test_a_missing_setting_names_its_flag_and_variable(aws, capsys, missing, variable):
    session, requests = aws
    flags = {"--role": ROLE, "--image_name": IMAGE, "--fsx_id": FSX_ID, "--fsx_mount_name": "m",
             "--subnet_ids": "subnet-1", "--security_group_ids": "sg-1"}
    del flags[missing]
    status = _launch("--entry_point", "pretrain", *[x for item in flags.items() for x in item])
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert error == f"keras-albert launch-sagemaker: error: {missing} is required (or set {variable})"
    assert not requests and not session.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]


@pytest.mark.parametrize("flags,message", [
    (["--total_stepz", "5"], "unrecognized arguments: --total_stepz 5 (flags of `keras-albert pretrain`"),
    (["--total_steps", "many"], "argument --total_steps: invalid int value: 'many'"),
    (["--model_size", "huge"], "argument --model_size: invalid choice: 'huge'"),
    (["--max_wait", "100"], "--max_wait applies to spot jobs: add --spot"),
    (["--spot", "--max_run", "100", "--max_wait", "50"], "--max_wait (50) must be >= --max_run (100)"),
    (["--instance_type", "p4d.24xlarge"], "--instance_type must be an ml.* type"),
    (["--processes_per_host", "8"], "--processes_per_host applies to --distribution mpi"),
    (["--entry_point", "no_such_script.py"], "--entry_point: no_such_script.py is neither a keras-albert command"),
    (["--fsx_id", "fs-1"], "the job request is invalid"),
])
def test_a_bad_flag_is_caught_before_anything_is_sent(aws, capsys, flags, message):
    session, requests = aws
    status = _launch("--entry_point", "pretrain", "--role", ROLE, "--image_name", IMAGE, "--fsx_id", FSX_ID,
                     "--fsx_mount_name", "m", "--subnet_ids", "subnet-1", "--security_group_ids", "sg-1", *flags)
    assert status == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1, error
    assert not requests and not session.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    assert not session.client("s3").list_buckets()["Buckets"]  # not even the SDK's default bucket was made
