"""Build crafted resources and stacks from the recorded physics example.

A builder takes the example's items (inputs for a resource check, outputs for a stack
check) and returns one changed item, or the whole changed stack. Items are copied before
they are changed, so the session's recording stays as the program registered it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tests.infra.harness import end_date_in
from tests.policies.analyzer import Item
from tests.policies.unknowns import UNKNOWN_STRING

LT = "aws:ec2/launchTemplate:LaunchTemplate"
CR = "aws:ec2/capacityReservation:CapacityReservation"
CAPACITY_BLOCK = "aws:ec2/capacityBlockReservation:CapacityBlockReservation"
SUBNET = "aws:ec2/subnet:Subnet"
BUDGET = "aws:budgets/budget:Budget"
ROLE = "aws:iam/role:Role"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
BUCKET_ENCRYPTION_V2 = (
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
)
DEPLOYMENT = "kubernetes:apps/v1:Deployment"

Build = Callable[[list[Item]], Item | list[Item]]


def one(items: list[Item], type_: str, name_part: str = "") -> Item:
    found = next(i for i in items if i.type == type_ and name_part in i.name)
    return replace(found, props=copy.deepcopy(found.props))


def patch(type_: str, changes: Callable[[dict[str, Any]], Any], name_part: str = "") -> Build:
    def build(items: list[Item]) -> Item:
        item = one(items, type_, name_part)
        changes(item.props)
        return item

    return build


def stack_patch(type_: str, changes: Callable[[dict[str, Any]], Any]) -> Build:
    """The whole stack with every resource of ``type_`` changed."""

    def build(items: list[Item]) -> list[Item]:
        changed = []
        for item in items:
            if item.type == type_:
                item = replace(item, props=copy.deepcopy(item.props))
                changes(item.props)
            changed.append(item)
        return changed

    return build


def stack_without(type_: str, name_part: str = "") -> Build:
    return lambda items: [i for i in items if not (i.type == type_ and name_part in i.name)]


def stack_plus(build: Callable[[list[Item]], Item]) -> Build:
    return lambda items: [*items, build(items)]


def second_nat(items: list[Item]) -> Item:
    return replace(one(items, "aws:ec2/natGateway:NatGateway"), name="orca-physics-nat-b")


def capacity_block(items: list[Item]) -> Item:
    """A capacity block as a program declares it: the offering, the platform and tags."""
    return Item(
        CAPACITY_BLOCK,
        "orca-physics-block",
        {
            "capacityBlockOfferingId": "cb-0123456789abcdef0",
            "instancePlatform": "Linux/UNIX",
            "tags": {"department": "physics", "cost-center": "cc-4410"},
        },
        one(items, LT).provider,
    )


def bought_capacity_block(count: float, days: float) -> Callable[[list[Item]], Item]:
    """A capacity block after the purchase: AWS filled in its type, count and dates."""

    def build(items: list[Item]) -> Item:
        block = capacity_block(items)
        block.props.update(
            instanceType="p5.48xlarge",
            instanceCount=count,
            startDate=end_date_in(1),
            endDate=end_date_in(1 + days),
            endDateType="limited",
            availabilityZone="us-east-1a",
        )
        return block

    return build


def volume(items: list[Item]) -> Item:
    return Item(
        "aws:ebs/volume:Volume",
        "orca-physics-scratch",
        {
            "availabilityZone": "us-east-1a",
            "size": 100.0,
            "encrypted": False,
            "tags": {"department": "physics", "cost-center": "cc-4410"},
        },
        one(items, LT).provider,
    )


def data_volume_mapping(props: dict[str, Any], **ebs: Any) -> None:
    """A second block device mapping after the root one, with ``ebs`` changed."""
    props["blockDeviceMappings"].append(
        {
            "deviceName": "/dev/sdb",
            "ebs": {"volumeSize": 200.0, "volumeType": "gp3", "encrypted": "true", **ebs},
        }
    )


def root_mapping_second(props: dict[str, Any], size: float) -> None:
    """The root mapping moved after a data mapping, with its size changed."""
    root = props["blockDeviceMappings"].pop(0)
    root["ebs"]["volumeSize"] = size
    data_volume_mapping(props)
    props["blockDeviceMappings"].append(root)


def untagged_without_default_tags(items: list[Item]) -> Item:
    item = one(items, "aws:ec2/vpc:Vpc")
    del item.props["tags"]
    provider = {k: v for k, v in (item.provider or {}).items() if k != "defaultTags"}
    return replace(item, provider=provider)


def with_unknown_default_tags(item: Item) -> Item:
    """``item`` whose provider's ``defaultTags`` are unknown, as at preview."""
    return replace(item, provider={**(item.provider or {}), "defaultTags": UNKNOWN_STRING})


def big_reservation(items: list[Item]) -> list[Item]:
    reservation = one(items, CR)
    reservation.props.update(instanceCount=4.0, endDate=end_date_in(300))
    return [i for i in items if i.type != CR] + [reservation]


def budget_set(**changes: Any) -> Build:
    def build(items: list[Item]) -> list[Item]:
        budget = one(items, BUDGET)
        budget.props.update(changes)
        return [i for i in items if i.type != budget.type] + [budget]

    return build


def two_budgets(items: list[Item]) -> list[Item]:
    extra = one(items, BUDGET)
    return [*items, replace(extra, name="orca-physics-extra")]


def no_forecast(props: dict[str, Any]) -> list[Any]:
    return [n for n in props["notifications"] if n["notificationType"] != "FORECASTED"]


def irsa_wildcard(props: dict[str, Any]) -> None:
    props["assumeRolePolicy"] = (
        props["assumeRolePolicy"]
        .replace('"StringEquals"', '"StringLike"')
        .replace("system:serviceaccount:orca-physics:orca-physics", "system:serviceaccount:*")
    )


def irsa_action(action: Any) -> Callable[[dict[str, Any]], None]:
    """The runtime role's trust statement with ``Action`` replaced."""

    def change(props: dict[str, Any]) -> None:
        document = json.loads(props["assumeRolePolicy"])
        document["Statement"][0]["Action"] = action
        props["assumeRolePolicy"] = json.dumps(document)

    return change


def container(props: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = props["spec"]["template"]["spec"]["containers"][0]
    return found


def _second_bucket(items: list[Item]) -> Item:
    bucket = one(items, BUCKET)
    return replace(bucket, name="orca-physics-scratch", dependencies={})


def bucket_names_unknown(items: list[Item]) -> list[Item]:
    """The stack as at preview: a new bucket's name, and so its configuration's, unknown."""
    changed = []
    for item in items:
        if item.type in (BUCKET, BUCKET_ENCRYPTION):
            props = {**item.props, "bucket": UNKNOWN_STRING}
            props.pop("id", None)
            item = replace(item, props=props)
        changed.append(item)
    return changed


def unencrypted_second_bucket_at_preview(items: list[Item]) -> list[Item]:
    """A second bucket, which the one encryption configuration (paired by dependency) skips."""
    stack = bucket_names_unknown(items)
    return [*stack, replace(_second_bucket(stack), props={**one(stack, BUCKET).props})]


def as_bucket_v2(items: list[Item]) -> list[Item]:
    """The bucket declared as ``aws.s3.BucketV2`` and its configuration as the V2 type."""
    renamed = {BUCKET: BUCKET_V2, BUCKET_ENCRYPTION: BUCKET_ENCRYPTION_V2}
    changed = []
    for item in items:
        dependencies = {
            prop: [(renamed.get(t, t), n) for t, n in keys]
            for prop, keys in item.dependencies.items()
        }
        changed.append(
            replace(item, type=renamed.get(item.type, item.type), dependencies=dependencies)
        )
    return changed


def bucket_v2_inline(algorithms: list[str]) -> Build:
    """A BucketV2 with the inline plural encryption shape and no configuration resource."""

    def build(items: list[Item]) -> list[Item]:
        stack = as_bucket_v2(stack_without(BUCKET_ENCRYPTION)(items))
        bucket = one(stack, BUCKET_V2)
        bucket.props["serverSideEncryptionConfigurations"] = [
            {"rules": [{"applyServerSideEncryptionByDefaults": [{"sseAlgorithm": a}]}]}
            for a in algorithms
        ]
        return [i for i in stack if i.type != BUCKET_V2] + [bucket]

    return build
