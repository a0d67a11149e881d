"""The IAM policy documents of the stack, as pure functions of resolved ARNs and names.

Kept apart from the resources that attach them so each document reads as one piece and can
be checked on its own. The runtime's policy is the one that matters: it lets the runtime
launch only from this stack's launch templates into this stack's subnets, create only
instances, volumes and interfaces tagged with this department, terminate and tag only
instances already tagged with it, and pass only the instance role. ``ec2:Describe*`` cannot
be scoped to resources (EC2 has no resource-level permissions for it), so it is on ``*``; nor
can the two price reads admission makes, ``pricing:GetProducts`` (the Price List API) and
``ec2:DescribeSpotPriceHistory`` (named on its own, though ``Describe*`` covers it, so that
narrowing ``Describe*`` later cannot take spot prices away).

Launches must also name an allowed instance type, create network interfaces without a
public address (``ec2:AssociatePublicIpAddress``, a condition key of RunInstances on
``network-interface``), and carry the department's cost tag; tags that attribute an
instance to a department or cluster cannot be changed after launch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orca import tags
from orca.aws.bundles import INSTANCE_BUNDLE_PATTERN
from orca.heartbeat import heartbeat_key

SERVICE_ACCOUNT_AUDIENCE = "sts.amazonaws.com"
# Tags that decide whose an instance is and who pays for it: set at launch, never changed.
PROTECTED_TAG_KEYS = (
    tags.DEPARTMENT,
    tags.CLUSTER,
    tags.MANAGED_BY,
    tags.COST_DEPARTMENT,
    tags.COST_CENTER,
)
Document = dict[str, Any]


def _document(*statements: Mapping[str, Any]) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


@dataclass(frozen=True)
class RuntimeScope:
    """What the runtime may touch, resolved from the stack's resources."""

    partition: str
    region: str
    account: str
    cluster: str
    department: str
    launch_template_arns: Sequence[str]
    subnet_ids: Sequence[str]
    security_group_id: str
    instance_role_arn: str
    queue_arns: Sequence[str]
    bucket_arn: str
    key_arn: str
    log_group_arn: str
    table_arn: str
    reservation_arns: Sequence[str] = ()
    reservation_group_arn: str | None = None
    allowed_instance_types: Sequence[str] = ("*",)

    def ec2(self, resource: str) -> str:
        return f"arn:{self.partition}:ec2:{self.region}:{self.account}:{resource}"


def runtime_policy(scope: RuntimeScope) -> Document:
    """Least privilege for ``orca run``: launch, watch and end this department's instances."""
    department_tags = {
        f"aws:RequestTag/{tags.DEPARTMENT}": scope.department,
        f"aws:RequestTag/{tags.CLUSTER}": scope.cluster,
        f"aws:RequestTag/{tags.COST_DEPARTMENT}": scope.department,
    }
    instance_conditions: dict[str, Any] = {
        "StringEquals": department_tags,
        "ArnEquals": {"ec2:LaunchTemplate": list(scope.launch_template_arns)},
    }
    if "*" not in scope.allowed_instance_types:
        # Family wildcards (g6e.*) are StringLike patterns as they stand.
        instance_conditions["StringLike"] = {"ec2:InstanceType": list(scope.allowed_instance_types)}
    owned = {
        f"ec2:ResourceTag/{tags.DEPARTMENT}": scope.department,
        f"ec2:ResourceTag/{tags.CLUSTER}": scope.cluster,
    }
    launch_targets = [*scope.reservation_arns]
    if scope.reservation_group_arn:
        launch_targets.append(scope.reservation_group_arn)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "LaunchFromTheStackTemplates",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": list(scope.launch_template_arns),
        },
        {
            "Sid": "LaunchIntoTheStackSubnets",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [
                *(scope.ec2(f"subnet/{subnet}") for subnet in scope.subnet_ids),
                scope.ec2(f"security-group/{scope.security_group_id}"),
            ],
        },
        {
            "Sid": "LaunchAmazonImages",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": f"arn:{scope.partition}:ec2:{scope.region}::image/*",
            "Condition": {"StringEquals": {"ec2:Owner": "amazon"}},
        },
        {
            "Sid": "CreateDepartmentInstancesFromTheStackTemplates",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": scope.ec2("instance/*"),
            "Condition": instance_conditions,
        },
        {
            "Sid": "CreateDepartmentVolumes",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": scope.ec2("volume/*"),
            "Condition": {"StringEquals": department_tags},
        },
        {
            # The runtime names the interface with AssociatePublicIpAddress false; a request
            # without it, or asking for a public address, is not allowed.
            "Sid": "CreateDepartmentInterfacesWithoutPublicIps",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": scope.ec2("network-interface/*"),
            "Condition": {
                "StringEquals": department_tags,
                "Bool": {"ec2:AssociatePublicIpAddress": "false"},
            },
        },
        {
            "Sid": "RequestSpotAndUseTheStackReservations",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [scope.ec2("spot-instances-request/*"), *launch_targets],
        },
        {
            # Capacity blocks are bought ahead (paid in full), outside the stack; one tagged
            # with the department and cluster when bought is the department's to launch into.
            "Sid": "UseTheDepartmentsTaggedCapacityBlocks",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": scope.ec2("capacity-reservation/*"),
            "Condition": {"StringEquals": owned},
        },
        {
            # RunInstances with TagSpecifications needs CreateTags, but only as part of it.
            "Sid": "TagOnLaunch",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": [
                scope.ec2("instance/*"),
                scope.ec2("volume/*"),
                scope.ec2("network-interface/*"),
                scope.ec2("spot-instances-request/*"),
            ],
            "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
        },
        {
            "Sid": "EndOnlyDepartmentInstances",
            "Effect": "Allow",
            "Action": "ec2:TerminateInstances",
            "Resource": scope.ec2("instance/*"),
            "Condition": {"StringEquals": owned},
        },
        {
            # Later tags on the department's instances, but never the ones that say whose
            # the instance is or who pays for it.
            "Sid": "TagOnlyDepartmentInstancesKeepingOwnership",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": scope.ec2("instance/*"),
            "Condition": {
                "StringEquals": owned,
                "ForAllValues:StringNotEquals": {"aws:TagKeys": list(PROTECTED_TAG_KEYS)},
            },
        },
        {
            "Sid": "PassOnlyTheInstanceRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": scope.instance_role_arn,
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        },
        {
            "Sid": "DescribeCannotBeScoped",
            "Effect": "Allow",
            "Action": "ec2:Describe*",
            "Resource": "*",
        },
        {
            # Admission prices a pod before it launches: on-demand rates from the Price List
            # API and spot prices per zone. Neither action has a resource to scope it to.
            "Sid": "PricesCannotBeScoped",
            "Effect": "Allow",
            "Action": ["pricing:GetProducts", "ec2:DescribeSpotPriceHistory"],
            "Resource": "*",
        },
        {
            "Sid": "ReadTheStackQueues",
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            ],
            "Resource": list(scope.queue_arns),
        },
        {
            "Sid": "WriteAndDeletePodBundles",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
            "Resource": f"{scope.bucket_arn}/bundles/*",
        },
        {
            # A pod's bundles (one per instance it had) are found by listing its prefix.
            "Sid": "ListPodBundles",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": scope.bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": "bundles/*"}},
        },
        {
            # The dead-man switch's heartbeat: this department's one object, write only.
            "Sid": "WriteTheRuntimeHeartbeat",
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": heartbeat_arn(scope.bucket_arn, scope.cluster, scope.department),
        },
        {
            "Sid": "UseTheStackKey",
            "Effect": "Allow",
            "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
            "Resource": scope.key_arn,
        },
        {
            "Sid": "ReadContainerLogs",
            "Effect": "Allow",
            "Action": ["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"],
            "Resource": [scope.log_group_arn, f"{scope.log_group_arn}:log-stream:*"],
        },
        {
            "Sid": "KeepTheCostLedger",
            "Effect": "Allow",
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:Query",
                "dynamodb:ConditionCheckItem",
            ],
            "Resource": scope.table_arn,
        },
    ]
    return _document(*statements)


def instance_trust() -> Document:
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    )


def heartbeat_arn(bucket_arn: str, cluster: str, department: str) -> str:
    """The runtime's heartbeat object, which the agents' dead-man switches read."""
    return f"{bucket_arn}/{heartbeat_key(cluster, department)}"


def instance_policy(
    *,
    bucket_arn: str,
    key_arn: str,
    log_group_arn: str,
    status_queue_arn: str,
    ecr_repositories_arn: str,
    cluster: str,
    department: str,
) -> Document:
    """What the agent on a burst instance needs: its bundle, its log streams, its reports,
    the runtime's heartbeat, and pulls of the account's ECR images."""
    return _document(
        {
            # A bundle holds its pod's resolved Secrets, so an instance reads only the one
            # keyed by its own ARN: IAM fills ${ec2:SourceInstanceARN} with the ARN of the
            # instance whose role credentials signed the request.
            "Sid": "ReadOnlyThisInstancesPodBundle",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"{bucket_arn}/{INSTANCE_BUNDLE_PATTERN}",
        },
        {
            # Without s3:ListBucket a missing heartbeat reads as AccessDenied, not NoSuchKey;
            # the agent counts both as silence, so listing is not granted.
            "Sid": "ReadTheRuntimeHeartbeat",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": heartbeat_arn(bucket_arn, cluster, department),
        },
        {
            "Sid": "DecryptPodBundles",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": key_arn,
        },
        {
            "Sid": "WriteContainerLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
        },
        {
            "Sid": "ReportStatus",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
            "Resource": status_queue_arn,
        },
        {
            # Pod images in the account's ECR repositories, pulled without a pull secret. The
            # registry sign-in token is account-wide: ECR has no resource for it.
            "Sid": "EcrSignInCannotBeScoped",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "PullEcrImages",
            "Effect": "Allow",
            "Action": [
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability",
            ],
            "Resource": ecr_repositories_arn,
        },
    )


def web_identity_trust(
    *, provider_arn: str, issuer_url: str, namespace: str, service_account: str
) -> Document:
    """Trust exactly one service account of one issuer, and only tokens meant for STS."""
    issuer = issuer_url.removeprefix("https://").rstrip("/")
    return _document(
        {
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                    f"{issuer}:aud": SERVICE_ACCOUNT_AUDIENCE,
                }
            },
        }
    )
