"""Properties every envelope must have, checked over the resources a run registered.

Each check returns the problems it found (empty when the envelope is sound), so a test can
assert both that the program passes and that a bad resource would be caught.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def public_ips(resources: Iterable[RecordedResource]) -> list[str]:
    """Anything that would give a burst instance a public address."""
    problems = []
    for r in resources:
        if r.type == SUBNET and r.inputs.get("mapPublicIpOnLaunch") is not False:
            problems.append(f"subnet {r.name} maps public IPs on launch")
        if r.type == LAUNCH_TEMPLATE:
            for interface in r.inputs.get("networkInterfaces") or []:
                if str(interface.get("associatePublicIpAddress", "false")).lower() == "true":
                    problems.append(f"launch template {r.name} asks for a public IP")
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
