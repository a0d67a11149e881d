"""The burst envelope, built in the local AWS as the Pulumi program builds it in AWS.

The runtime needs an envelope to exist before it can launch anything: private
subnets in two zones, a security group, launch templates per architecture, the
status queue, the bundle bucket, the log group and the cost ledger table (with the
monthly budget the runtime holds in it). In a real account ``pulumi up``
(``infra/``) creates them; for the demo and the tests :func:`create_envelope`
creates the same resources, with the same settings where moto keeps them, in the
local AWS. It is idempotent: every resource is found by its name (and ORCA's
tags) before it is created, so running it twice returns the same ids.

What moto does not model is left out rather than faked: IAM instance profiles on
launch templates and the KMS key behind ``aws:kms`` (moto accepts the setting).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orca.aws.clients import AwsClients
from orca.aws.errors import AwsError, NotFoundError, aws_call
from orca.tags import CLUSTER, DEPARTMENT, MANAGED_BY, MANAGED_BY_VALUE, NAME

log = logging.getLogger(__name__)

VPC_CIDR = "10.64.0.0/16"
SUBNET_CIDRS = ("10.64.0.0/20", "10.64.16.0/20")
ROOT_DEVICE = "/dev/xvda"
LOG_RETENTION_DAYS = 30
# The local department's monthly budget: enough for the demo's pods, whose lifetimes
# (their bound cost) are minutes to a day of p5, c7i and g6e instances.
DEFAULT_BUDGET_USD = 5000

# The public SSM parameters of the ECS-optimized Amazon Linux 2023 AMIs, which ship a
# container runtime (and, for the GPU variant, the NVIDIA driver and container toolkit).
AMI_PARAMETERS = {
    "x86_64-gpu": "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
    "x86_64": "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id",
    "arm64": "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id",
}
ROOT_VOLUME_GIB = {"x86_64-gpu": 200, "x86_64": 50, "arm64": 50}


@dataclass(frozen=True)
class Envelope:
    """The ids of one department's envelope; ``launch_templates`` maps variant -> id."""

    vpc_id: str
    subnet_ids: list[str]
    security_group_id: str
    launch_templates: dict[str, str]
    status_queue_url: str
    bundle_bucket: str
    log_group: str
    region: str
    subnet_zones: dict[str, str] = field(default_factory=dict)  # subnet id -> zone
    cluster: str = ""
    department: str = ""
    ledger_table: str = ""
    budget_usd: int = DEFAULT_BUDGET_USD

    def settings_environment(self) -> dict[str, str]:
        """The ``ORCA_*`` variables a runtime needs for this envelope (as the Pulumi
        program's generated settings would hold them for a real one)."""
        return {
            "ORCA_DEPARTMENT": self.department,
            "ORCA_CLUSTER_NAME": self.cluster,
            "ORCA_REGION": self.region,
            "ORCA_SUBNET_IDS": json.dumps(self.subnet_ids),
            "ORCA_SECURITY_GROUP_IDS": json.dumps([self.security_group_id]),
            "ORCA_LAUNCH_TEMPLATES": json.dumps(self.launch_templates),
            "ORCA_STATUS_QUEUE_URL": self.status_queue_url,
            "ORCA_BUNDLE_BUCKET": self.bundle_bucket,
            "ORCA_LOG_GROUP": self.log_group,
            "ORCA_BUDGET__LEDGER_TABLE": self.ledger_table,
            "ORCA_BUDGET__MONTHLY_USD": str(self.budget_usd),
        }


def create_envelope(
    clients: AwsClients,
    *,
    department: str,
    cluster: str,
    region: str,
    budget_usd: int = DEFAULT_BUDGET_USD,
) -> Envelope:
    """Create (or find) a department's envelope in the local AWS."""
    prefix = f"orca-{cluster}-{department}"
    tags = {CLUSTER: cluster, DEPARTMENT: department, MANAGED_BY: MANAGED_BY_VALUE}
    ec2 = clients.ec2

    vpc_id = _vpc(ec2, prefix, tags)
    subnets = _subnets(ec2, vpc_id, prefix, tags)
    security_group_id = _security_group(ec2, vpc_id, prefix, tags)
    images = {variant: _ssm_value(clients.ssm, name) for variant, name in AMI_PARAMETERS.items()}
    templates = {
        variant: _launch_template(ec2, f"{prefix}-{variant}", image, variant, tags)
        for variant, image in images.items()
    }

    envelope = Envelope(
        vpc_id=vpc_id,
        subnet_ids=list(subnets),
        security_group_id=security_group_id,
        launch_templates=templates,
        status_queue_url=_queue(clients.sqs, f"{prefix}-status", tags),
        bundle_bucket=_bucket(clients, f"{prefix}-bundles", tags),
        log_group=_log_group(clients.logs, f"/orca/{cluster}/{department}/containers", tags),
        region=region,
        subnet_zones=subnets,
        cluster=cluster,
        department=department,
        ledger_table=ledger_table(clients.client("dynamodb"), f"{prefix}-ledger", tags),
        budget_usd=budget_usd,
    )
    log.info("envelope of %s/%s ready in %s: vpc %s", cluster, department, region, vpc_id)
    return envelope


def _tag_spec(resource: str, tags: dict[str, str], name: str) -> list[dict[str, Any]]:
    pairs = {**tags, NAME: name}
    return [{"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in pairs.items()]}]


def _by_name(name: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    return [*filters, {"Name": "tag:Name", "Values": [name]}]


def _vpc(ec2: Any, name: str, tags: dict[str, str]) -> str:
    with aws_call(f"finding or creating VPC {name}"):
        found = ec2.describe_vpcs(Filters=_by_name(name, tags))["Vpcs"]
        if found:
            return str(found[0]["VpcId"])
        vpc = ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=_tag_spec("vpc", tags, name))
        vpc_id = str(vpc["Vpc"]["VpcId"])
        # Instances resolve AWS endpoints (SQS, S3, Logs) by DNS.
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        return vpc_id


def _subnets(ec2: Any, vpc_id: str, prefix: str, tags: dict[str, str]) -> dict[str, str]:
    """Two private subnets in the region's first two zones: subnet id -> zone."""
    with aws_call(f"finding or creating the subnets of {prefix}"):
        zones = sorted(
            zone["ZoneName"]
            for zone in ec2.describe_availability_zones()["AvailabilityZones"]
            if zone.get("State", "available") == "available"
        )[: len(SUBNET_CIDRS)]
        subnets: dict[str, str] = {}
        for zone, cidr in zip(zones, SUBNET_CIDRS, strict=False):
            name = f"{prefix}-private-{zone}"
            found = ec2.describe_subnets(
                Filters=[*_by_name(name, tags), {"Name": "vpc-id", "Values": [vpc_id]}]
            )["Subnets"]
            if found:
                subnets[found[0]["SubnetId"]] = zone
                continue
            created = ec2.create_subnet(
                VpcId=vpc_id,
                CidrBlock=cidr,
                AvailabilityZone=zone,
                TagSpecifications=_tag_spec("subnet", tags, name),
            )["Subnet"]
            # Private: instances get no public address; they reach AWS through the VPC.
            ec2.modify_subnet_attribute(
                SubnetId=created["SubnetId"], MapPublicIpOnLaunch={"Value": False}
            )
            subnets[created["SubnetId"]] = zone
        return subnets


def _security_group(ec2: Any, vpc_id: str, prefix: str, tags: dict[str, str]) -> str:
    name = f"{prefix}-instances"
    with aws_call(f"finding or creating security group {name}"):
        found = ec2.describe_security_groups(
            Filters=[
                {"Name": "group-name", "Values": [name]},
                {"Name": "vpc-id", "Values": [vpc_id]},
            ]
        )["SecurityGroups"]
        if found:
            return str(found[0]["GroupId"])
        # No ingress: the agent only calls out (SQS, S3, Logs); nothing calls in.
        created = ec2.create_security_group(
            GroupName=name,
            Description="ORCA burst instances: no ingress",
            VpcId=vpc_id,
            TagSpecifications=_tag_spec("security-group", tags, name),
        )
        return str(created["GroupId"])


def _ssm_value(ssm: Any, name: str) -> str:
    with aws_call(f"reading the AMI parameter {name}"):
        return str(ssm.get_parameter(Name=name)["Parameter"]["Value"])


def _launch_template(ec2: Any, name: str, image_id: str, variant: str, tags: dict[str, str]) -> str:
    with aws_call(f"finding or creating launch template {name}"):
        found = ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [name]}]
        )["LaunchTemplates"]
        if found:
            return str(found[0]["LaunchTemplateId"])
        data = {
            "ImageId": image_id,
            "InstanceInitiatedShutdownBehavior": "terminate",
            # IMDSv2 only, and a hop limit of 1 so containers (one hop further) cannot
            # reach the instance role's credentials.
            "MetadataOptions": {
                "HttpTokens": "required",
                "HttpPutResponseHopLimit": 1,
                "HttpEndpoint": "enabled",
            },
            "BlockDeviceMappings": [
                {
                    "DeviceName": ROOT_DEVICE,
                    "Ebs": {
                        "VolumeSize": ROOT_VOLUME_GIB[variant],
                        "VolumeType": "gp3",
                        "Encrypted": True,
                        "DeleteOnTermination": True,
                    },
                }
            ],
        }
        created = ec2.create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData=data,
            TagSpecifications=_tag_spec("launch-template", tags, name),
        )
        return str(created["LaunchTemplate"]["LaunchTemplateId"])


def _queue(sqs: Any, name: str, tags: dict[str, str]) -> str:
    with aws_call(f"finding or creating queue {name}"):
        # CreateQueue returns the existing queue when the attributes match.
        created = sqs.create_queue(
            QueueName=name,
            Attributes={
                "SqsManagedSseEnabled": "true",
                "ReceiveMessageWaitTimeSeconds": "20",
                "MessageRetentionPeriod": str(4 * 24 * 3600),
            },
            tags=tags,
        )
        return str(created["QueueUrl"])


def _bucket(clients: AwsClients, base: str, tags: dict[str, str]) -> str:
    s3 = clients.s3
    with aws_call("reading the account id"):
        account = str(clients.client("sts").get_caller_identity()["Account"])
    # Bucket names are global across accounts; the account id keeps ours unique.
    name = f"{base}-{account}"[:63].rstrip("-")
    try:
        with aws_call(f"looking for bucket {name}"):
            s3.head_bucket(Bucket=name)
        return name
    except NotFoundError:
        pass

    with aws_call(f"creating bucket {name}"):
        params: dict[str, Any] = {"Bucket": name}
        if clients.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": clients.region}
        s3.create_bucket(**params)
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"},
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
        s3.put_bucket_tagging(
            Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
        )
        return name


def _log_group(logs: Any, name: str, tags: dict[str, str]) -> str:
    try:
        with aws_call(f"creating log group {name}"):
            logs.create_log_group(logGroupName=name, tags=tags)
    except AwsError as e:
        if e.code != "ResourceAlreadyExistsException":
            raise
    with aws_call(f"setting the retention of log group {name}"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=LOG_RETENTION_DAYS)
    return name


def ledger_table(dynamodb: Any, name: str, tags: Mapping[str, str] | None = None) -> str:
    """The cost ledger: the key schema of infra/orca_infra/storage.py (pk and sk, strings)."""
    try:
        with aws_call(f"looking for table {name}"):
            dynamodb.describe_table(TableName=name)
        return name
    except NotFoundError:
        pass
    with aws_call(f"creating table {name}"):
        dynamodb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
        )
        dynamodb.get_waiter("table_exists").wait(TableName=name)
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orca_local.envelope",
        description="Create a department's envelope in the local AWS (AWS_ENDPOINT_URL) and "
        "print the ORCA_* settings for its runtime, ready for `source`.",
    )
    parser.add_argument("--department", required=True)
    parser.add_argument("--cluster", default="campus")
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    clients = AwsClients(args.region)
    envelope = create_envelope(
        clients, department=args.department, cluster=args.cluster, region=args.region
    )
    for key, value in envelope.settings_environment().items():
        sys.stdout.write(f"export {key}={shlex.quote(value)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
