"""Launch pretraining or SQuAD on Amazon SageMaker: the 2020 reference's `python -m albert.launch_sagemaker`.

The same code as `keras-albert launch-sagemaker` (`keras_albert.sagemaker.launch`); needs the SDK:
`pip install "keras-albert[sagemaker]"`. The image comes from container/Dockerfile (container/README.md: build, push
to ECR). Role, image, FSx for Lustre and VPC come from the reference's environment variables:

    export SAGEMAKER_ROLE=arn:aws:iam::123456789012:role/service-role/AmazonSageMaker-ExecutionRole-20200101T123
    export SAGEMAKER_IMAGE_NAME=123456789012.dkr.ecr.us-east-1.amazonaws.com/keras-albert:tf2.21
    export SAGEMAKER_FSX_ID=fs-0123456789abcdef0 SAGEMAKER_FSX_MOUNT_NAME=abcdefgh
    export SAGEMAKER_SUBNET_IDS=subnet-123 SAGEMAKER_SECURITY_GROUP_IDS=sg-123,sg-456

See the request without sending anything (no credentials needed):

    python examples/launch_sagemaker.py --entry_point pretrain --sm_job_name albert-pretrain --dry_run

ALBERT-base pretraining on 2 hosts, the records and the run on FSx (paths relative to the file system's root):

    keras-albert launch-sagemaker --entry_point pretrain --sm_job_name albert-pretrain \\
        --instance_type ml.p4d.24xlarge --instance_count 2 --load_from scratch --model_type albert \\
        --model_size base --train_files 'albert/records-512/*.tfrecord' --output_dir albert/runs/albert-base \\
        --per_gpu_batch_size 32 --gradient_accumulation_steps 2 --warmup_steps 3125 --total_steps 125000 \\
        --learning_rate 0.00176 --optimizer lamb --mixed_precision bf16 --log_frequency 10 --name myfirstjob

SQuAD v2.0 finetuning of that run:

    keras-albert launch-sagemaker --entry_point squad --sm_job_name albert-squad \\
        --instance_type ml.p4d.24xlarge --instance_count 1 --load_from checkpoint \\
        --checkpoint_path albert/runs/albert-base --train_file squad/train-v2.0.json \\
        --predict_file squad/dev-v2.0.json --per_gpu_batch_size 6 --total_steps 8144 --warmup_steps 814 \\
        --learning_rate 3e-5 --task_name squadv2

container/README.md has BERT's two phases, spot training and the MPI distribution.
"""

import sys

from keras_albert.sagemaker import launch

if __name__ == "__main__":
    sys.exit(launch.main())
