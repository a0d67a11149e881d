"""Properties every envelope must have, checked over the resources a run registered.

Each check returns the problems it found (empty when the envelope is sound), so a test can
assert both that the program passes and that a bad resource would be caught.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from tests.infra.harness import RecordedResource

SUBNET = "aws:ec2/subnet:Subnet"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
QUEUE = "aws:sqs/queue:Queue"
RESERVATION = "aws:ec2/capacityReservation:CapacityReservation"
VOLUME = "aws:ebs/volume:Volume"


RUNTIME_POLICY_TYPES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/userPolicy:UserPolicy")
# The tags that say whose an instance is and who pays for it.
OWNERSHIP_TAG_KEYS = {
    "orca.research/department",
    "orca.research/cluster",
    "department",
    "cost-center",
}


def public_ips(
    resources: Iterable[RecordedResource],
    adopted_subnets: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Anything that would give a burst instance a public address.

    ``adopted_subnets`` are the attributes of the subnets an adopted network names, by id (what
    the subnet lookup answered); the program must have refused any that maps public IPs.
    Launch templates must leave the network interface to the runtime's request (which asks
    for no public IP): a template may neither ask for a public IP nor name security groups at
    the top level, which would make EC2 refuse that request. The runtime's IAM policy must
    allow creating network interfaces only without a public address.
    """
    resources = list(resources)
    problems = []
    for subnet_id, subnet in (adopted_subnets or {}).items():
        if subnet.get("mapPublicIpOnLaunch") is not False:
            problems.append(f"adopted subnet {subnet_id} maps public IPs on launch")
    for r in resources:
        if r.type == SUBNET and r.inputs.get("mapPublicIpOnLaunch") is not False:
            problems.append(f"subnet {r.name} maps public IPs on launch")
        if r.type == LAUNCH_TEMPLATE:
            for interface in r.inputs.get("networkInterfaces") or []:
                if str(interface.get("associatePublicIpAddress", "false")).lower() != "false":
                    problems.append(f"launch template {r.name} asks for a public IP")
            if r.inputs.get("vpcSecurityGroupIds") or r.inputs.get("securityGroupNames"):
                problems.append(
                    f"launch template {r.name} names security groups, so the runtime's "
                    "request cannot carry its own network interface"
                )
        if r.type in RUNTIME_POLICY_TYPES and "runtime" in r.name:
            problems += public_interface_grants(json.loads(r.inputs["policy"]))
    return problems


def _actions(statement: Mapping[str, Any]) -> list[str]:
    action = statement.get("Action", [])
    return action if isinstance(action, list) else [action]


def _resources(statement: Mapping[str, Any]) -> list[str]:
    resource = statement.get("Resource", [])
    return resource if isinstance(resource, list) else [resource]


def _grants(statement: Mapping[str, Any], action: str, resource_type: str) -> bool:
    """Whether an Allow statement grants ``action`` on resources of ``resource_type``."""
    service = action.split(":")[0]
    return (
        statement.get("Effect") == "Allow"
        and any(a in (action, "*", f"{service}:*") for a in _actions(statement))
        and any(r == "*" or f":{resource_type}/" in r for r in _resources(statement))
    )


def public_interface_grants(policy: Mapping[str, Any]) -> list[str]:
    """RunInstances grants on network interfaces that do not require no public address."""
    return [
        f"statement {s.get('Sid')} lets RunInstances create interfaces with public IPs"
        for s in policy["Statement"]
        if _grants(s, "ec2:RunInstances", "network-interface")
        and s.get("Condition", {}).get("Bool", {}).get("ec2:AssociatePublicIpAddress") != "false"
    ]


def ownership_retags(policy: Mapping[str, Any]) -> list[str]:
    """CreateTags grants that could change whose an instance is or who pays for it.

    Tagging is safe as part of a launch (``ec2:CreateAction``, when RunInstances itself is
    held to the department's request tags) or when the grant excludes the ownership keys
    with ``ForAllValues:StringNotEquals`` on ``aws:TagKeys``.
    """
    problems = []
    for s in policy["Statement"]:
        if not _grants(s, "ec2:CreateTags", "instance"):
            continue
        condition = s.get("Condition", {})
        on_launch = condition.get("StringEquals", {}).get("ec2:CreateAction")
        excluded = condition.get("ForAllValues:StringNotEquals", {}).get("aws:TagKeys", [])
        if on_launch not in ("RunInstances", ["RunInstances"]) and not (
            set(excluded) >= OWNERSHIP_TAG_KEYS
        ):
            problems.append(f"statement {s.get('Sid')} lets CreateTags rewrite ownership tags")
    return problems


def untagged_launches(policy: Mapping[str, Any], department: str) -> list[str]:
    """RunInstances grants that create instances, volumes or interfaces without cost tags."""
    problems = []
    for resource_type in ("instance", "volume", "network-interface"):
        for s in policy["Statement"]:
            if not _grants(s, "ec2:RunInstances", resource_type):
                continue
            required = s.get("Condition", {}).get("StringEquals", {})
            if required.get("aws:RequestTag/department") != department:
                problems.append(
                    f"statement {s.get('Sid')} creates a {resource_type} without the "
                    "department cost tag"
                )
    return problems


def unencrypted(resources: Iterable[RecordedResource]) -> list[str]:
    """Volumes, buckets and queues that would hold data unencrypted."""
    resources = list(resources)
    problems = []
    encrypted_buckets = {
        r.inputs.get("bucket")
        for r in resources
        if r.type == BUCKET_ENCRYPTION
        and any(
            rule.get("applyServerSideEncryptionByDefault", {}).get("sseAlgorithm")
            in ("aws:kms", "aws:kms:dsse")
            for rule in r.inputs.get("rules", [])
        )
    }
    for r in resources:
        if r.type == LAUNCH_TEMPLATE:
            for mapping in r.inputs.get("blockDeviceMappings") or []:
                ebs = mapping.get("ebs") or {}
                if str(ebs.get("encrypted", "false")).lower() != "true":
                    problems.append(f"launch template {r.name}: {mapping.get('deviceName')}")
        if r.type == VOLUME and r.inputs.get("encrypted") is not True:
            problems.append(f"volume {r.name}")
        if r.type == BUCKET and r.outputs.get("bucket") not in encrypted_buckets:
            problems.append(f"bucket {r.name} has no SSE-KMS configuration")
        if r.type == QUEUE and not (
            r.inputs.get("sqsManagedSseEnabled") is True or r.inputs.get("kmsMasterKeyId")
        ):
            problems.append(f"queue {r.name}")
    return problems


def open_ended_reservations(resources: Iterable[RecordedResource]) -> list[str]:
    """Capacity reservations that would be paid for until someone remembers them."""
    return [
        f"reservation {r.name}"
        for r in resources
        if r.type == RESERVATION
        and (r.inputs.get("endDateType") != "limited" or not r.inputs.get("endDate"))
    ]
