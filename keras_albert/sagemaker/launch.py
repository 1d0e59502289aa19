"""The `keras-albert launch-sagemaker` command: run a keras-albert command (or a script) as a SageMaker training job.

The launcher's own flags say where and how the job runs; every other flag is the entry point's (checked by its own
parser before anything is sent) and travels as a hyperparameter. The role, image, FSx file system, subnets and
security groups default to the 2020 reference's environment variables:

    export SAGEMAKER_ROLE=arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole
    export SAGEMAKER_IMAGE_NAME=123456789012.dkr.ecr.us-east-1.amazonaws.com/keras-albert:latest
    export SAGEMAKER_FSX_ID=fs-0123456789abcdef0 SAGEMAKER_FSX_MOUNT_NAME=abcdefgh
    export SAGEMAKER_SUBNET_IDS=subnet-123 SAGEMAKER_SECURITY_GROUP_IDS=sg-123,sg-456
    keras-albert launch-sagemaker --entry_point pretrain --sm_job_name albert-base --instance_type ml.p4d.24xlarge \\
        --instance_count 2 --fsx_directory /albert/records-512 --model_type albert --model_size base \\
        --per_gpu_batch_size 32 --gradient_accumulation_steps 2 --total_steps 125000 --warmup_steps 3125 \\
        --learning_rate 0.00176 --optimizer lamb --mixed_precision bf16 --log_frequency 10

`--dry_run` prints the CreateTrainingJob request as JSON and sends nothing (no credentials needed, no upload, no
role check; the SDK's default bucket is named from the role's account). The SDK (`pip install
"keras-albert[sagemaker]"`) is imported only here.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import re
import sys
import tempfile
import textwrap

from keras_albert.errors import UserInputError
from keras_albert.sagemaker import spec as job_spec_module

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/")


def _collect_training_flags(parser):
    """Makes `parser` keep the flags it does not know in `args.training_flags` instead of refusing them."""
    parse_known_args = parser.parse_known_args

    def collecting(args=None, namespace=None):
        namespace, unknown = parse_known_args(args, namespace)
        namespace.training_flags = list(getattr(namespace, "training_flags", None) or []) + unknown
        return namespace, []

    parser.parse_known_args = collecting
    parser.allow_abbrev = False  # an abbreviated training flag must not be taken for a launcher flag


def add_arguments(parser):
    env = job_spec_module.ENVIRONMENT_DEFAULTS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = textwrap.fill(
        "Every other flag (--total_steps 1000, --model_size base, ...) is a flag of the entry point: it becomes a "
        "hyperparameter of the job and a flag of the command in the container. In the container, relative paths in "
        "those flags are relative to --fsx_directory; pretrain keeps --output_dir in /opt/ml/checkpoints (synced to "
        "--checkpoint_s3_uri, so a restarted job resumes) and copies its model and a Hugging Face export to "
        "/opt/ml/model (the job's model.tar.gz); --train_files defaults to the *.tfrecord files of --fsx_directory. "
        "container/README.md has the commands of the reference's runs.",
        width=100,
    )
    _collect_training_flags(parser)
    job = parser.add_argument_group("job")
    job.add_argument("--entry_point", help="A keras-albert command (pretrain, squad, create-pretraining-data, ...) or "
                     "a .py/.sh script inside --source_dir.")
    job.add_argument("--source_dir", help="Local directory uploaded with the job (without .git, virtual "
                     "environments, runs/). Needed for a script entry point (default there: .); with a command, a "
                     "keras_albert package inside it (a checkout) replaces the image's.")
    job.add_argument("--sm_job_name", help="Base name of the job; SageMaker's adds a timestamp. Default: keras-albert.")
    job.add_argument("--instance_type", help="Any ml.* instance type. Default: ml.p4d.24xlarge.")
    job.add_argument("--instance_count", type=int, help="Number of hosts. Default: 1.")
    job.add_argument("--distribution", choices=job_spec_module.DISTRIBUTIONS,
                     help="multi_worker: one TensorFlow worker per host (MultiWorkerMirroredStrategy over all its "
                     "GPUs, TF_CONFIG from SageMaker's hosts); mpi: mpirun over all hosts, Horovod ranks. "
                     "Default: multi_worker.")
    job.add_argument("--processes_per_host", type=int, help="MPI processes per host. Default: one per GPU.")
    job.add_argument("--role", help=f"IAM role ARN (or name) of the job. Default: ${env['role']}.")
    job.add_argument("--image_name", help=f"Training image URI (container/Dockerfile). Default: ${env['image_name']}.")
    data = parser.add_argument_group("FSx for Lustre and VPC")
    data.add_argument("--fsx_id", help=f"File system id. Default: ${env['fsx_id']}.")
    data.add_argument("--fsx_mount_name", help=f"The file system's mount name. Default: ${env['fsx_mount_name']}.")
    data.add_argument("--fsx_directory", help="Directory on the file system mounted as the train channel "
                      "(/opt/ml/input/data/train). Default: /.")
    data.add_argument("--subnet_ids", help=f"Comma list. Default: ${env['subnet_ids']}.")
    data.add_argument("--security_group_ids", help=f"Comma list. Default: ${env['security_group_ids']}.")
    run = parser.add_argument_group("time, spot, S3")
    run.add_argument("--spot", action="store_true", default=None, help="Managed spot training.")
    run.add_argument("--max_run", type=int, help="Seconds the job may run. Default: 86400.")
    run.add_argument("--max_wait", type=int, help="Spot: seconds in all, waiting for capacity included "
                     "(>= --max_run). Default: 2 x --max_run.")
    run.add_argument("--checkpoint_s3_uri", help="Where /opt/ml/checkpoints is synced; give the same URI to a new "
                     "job to resume a run. Default: the SDK's, under the job's name.")
    run.add_argument("--output_s3_uri", help="Where the job's model.tar.gz goes. Default: the SDK's default bucket.")
    run.add_argument("--dry_run", action="store_true",
                     help="Print the CreateTrainingJob request as JSON; send nothing.")
    run.add_argument("--wait", action="store_true", help="Wait for the job to end, printing its logs.")


def _launcher_values(args):
    names = {field.name for field in dataclasses.fields(job_spec_module.JobSpec)}
    return {key: value for key, value in vars(args).items() if key in names}


def _boto_session():
    """boto3's default session (the one `boto3.setup_default_session` configures), else a new one."""
    import boto3

    return boto3.DEFAULT_SESSION or boto3.Session()


def _import_sdk():
    try:
        import sagemaker.train.model_trainer  # noqa: F401
    except ImportError as error:
        raise UserInputError(
            f"launch-sagemaker needs the SageMaker SDK ({error}): pip install 'keras-albert[sagemaker]'"
        ) from None


def _region(boto_session):
    region = boto_session.region_name
    if not region:
        raise UserInputError("no AWS region: set AWS_DEFAULT_REGION (or region in ~/.aws/config)")
    return region


class _DryRunSent(RuntimeError):
    """Raised when a dry run would have sent a request (which it must never do)."""


def _offline_session(region, account):
    """A SageMaker session that sends nothing: the default bucket is named (`sagemaker-REGION-ACCOUNT`), not looked
    up or created; uploads are named, not made; any request that would still go out raises."""
    import boto3
    from sagemaker.core.helper.session_helper import Session

    class OfflineSession(Session):
        def default_bucket(self):
            return f"sagemaker-{region}-{account}"

        def upload_data(self, path, bucket=None, key_prefix="data", callback=None, extra_args=None):
            return f"s3://{bucket or self.default_bucket()}/{key_prefix}"

    def refuse(request, **kwargs):
        raise _DryRunSent(f"an offline request would have sent {request.method} {request.url}")

    boto_session = boto3.Session(region_name=region, aws_access_key_id="offline", aws_secret_access_key="offline")
    boto_session.events.register("before-send", refuse)
    return OfflineSession(boto_session=boto_session)


def _offline_request(spec, region, scratch_dir, dry_run):
    """The request built and checked without sending anything. For a dry run the role must be an ARN (its account
    names the default bucket); before a real launch any role will do, as only the request's shape is checked."""
    match = _ROLE_ARN.match(spec.role)
    if not match and dry_run:
        raise UserInputError(f"--dry_run needs --role as an IAM role ARN (a name is looked up in IAM). "
                             f"Received: {spec.role!r}")
    if not match:
        spec = dataclasses.replace(spec, role="arn:aws:iam::000000000000:role/unchecked")
    offline = _offline_session(region, match.group(1) if match else "000000000000")
    with _role_check_skipped():
        request = training_job_request(spec, offline, scratch_dir)
    return _checked(request, offline.boto_session, region)


@contextlib.contextmanager
def _role_check_skipped():
    # The SDK checks the role with iam:SimulatePrincipalPolicy while it builds the job; a dry run sends nothing.
    old = os.environ.get("SAGEMAKER_VALIDATE_ROLE")
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SAGEMAKER_VALIDATE_ROLE", None)
        else:
            os.environ["SAGEMAKER_VALIDATE_ROLE"] = old


def _checked(request, boto_session, region):
    """`request`, after botocore checked it against the CreateTrainingJob API (lengths, patterns, types)."""
    from botocore.validate import ParamValidator

    model = boto_session.client("sagemaker", region_name=region).meta.service_model
    report = ParamValidator().validate(request, model.operation_model("CreateTrainingJob").input_shape)
    if report.has_errors():
        raise UserInputError("the job request is invalid: " + " ".join(report.generate_report().split()))
    return request


def training_job_request(spec, session, scratch_dir):
    """The CreateTrainingJob request (boto3's form) for `spec`, as the SDK's `ModelTrainer` builds it (uploading
    the source and driver directories it names, unless `session` is a dry run's)."""
    trainer = job_spec_module.model_trainer(spec, session, scratch_dir)
    return trainer._create_training_job_args(boto3=True)


def launch(spec, dry_run=False, wait=False, boto_session=None, out=None):
    """Creates the training job of `spec` (or, with `dry_run`, prints its request and sends nothing).

    Returns:
        The CreateTrainingJob request (a dict in boto3's form).
    """
    out = out or sys.stdout
    _import_sdk()
    from botocore.exceptions import ClientError, NoCredentialsError

    boto_session = boto_session or _boto_session()
    region = _region(boto_session)
    with tempfile.TemporaryDirectory(prefix="keras-albert-sagemaker-") as scratch:
        # Built offline first, so a request AWS would refuse is reported before any bucket is made or file uploaded.
        request = _offline_request(spec, region, scratch, dry_run)
        if dry_run:
            print(json.dumps(request, indent=2), file=out)
            return request
        from sagemaker.core.helper.session_helper import Session

        session = Session(boto_session=boto_session)
        try:
            request = _checked(training_job_request(spec, session, scratch), boto_session, region)
            response = session.sagemaker_client.create_training_job(**request)
        except NoCredentialsError:
            raise UserInputError("no AWS credentials: run `aws configure`, set AWS_PROFILE, or set "
                                 "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
        except ClientError as error:
            raise UserInputError(f"AWS refused the job: {error}") from None
    name = request["TrainingJobName"]
    print(f"created SageMaker training job {name} ({response['TrainingJobArn']})", file=out)
    if wait:
        from sagemaker.core.resources import TrainingJob

        TrainingJob.get(training_job_name=name, session=boto_session, region=region).wait(logs=True)
    return request


def run(args):
    spec = job_spec_module.job_spec(_launcher_values(args), args.training_flags)
    launch(spec, dry_run=args.dry_run, wait=args.wait)
    return 0


def main(argv=None):
    """`keras-albert launch-sagemaker` with `argv` (the reference's `python -m albert.launch_sagemaker`)."""
    from keras_albert import cli

    return cli.main(["launch-sagemaker", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
