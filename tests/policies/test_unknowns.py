"""Values unknown at preview never crash a policy and never fail one that cannot know.

During ``pulumi preview`` the engine sends a sentinel for every value it does not know yet:
a leaf, a whole object (a resource's ``tags``, a template's ``metadataOptions``), a whole
list (``blockDeviceMappings``) or a provider's ``defaultTags``. The example stacks pass
every policy, so a value made unknown (which may still turn out as recorded) must not
fail one either; a policy that raised would fail the engine's RPC, and one that read an
unknown value through the proxy would turn into a "can't run policy" advisory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc
import pytest

from tests.policies.analyzer import Diagnostic, Item, Pack, items_from_run
from tests.policies.conftest import EXAMPLES, department_config
from tests.policies.recording import RecordedStack
from tests.policies.unknowns import all_unknown, unknown_at, unknown_paths

# What the stack policies read; every aws resource and every Deployment is read by a
# resource policy (the cost tags, at least).
STACK_TYPES = {
    "aws:budgets/budget:Budget",
    "aws:ec2/capacityReservation:CapacityReservation",
    "aws:ec2/capacityBlockReservation:CapacityBlockReservation",
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/vpc:Vpc",
    "aws:ec2/vpcEndpoint:VpcEndpoint",
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
}


def _read_by_a_resource_policy(item: Item) -> bool:
    return item.type.startswith("aws:") or item.type == "kubernetes:apps/v1:Deployment"


def _variants(item: Item) -> list[tuple[str, Item]]:
    """``item`` with one value unknown, for each value in turn: its own, then its provider's."""
    found = [
        (
            f"{item.name}: {'.'.join(map(str, path))}",
            replace(item, props=unknown_at(item.props, path)),
        )
        for path in unknown_paths(item.props)
    ]
    if item.provider is not None:
        found += [
            (
                f"{item.name}: provider {'.'.join(map(str, path))}",
                replace(item, provider=unknown_at(item.provider, path)),
            )
            for path in unknown_paths(item.provider)
        ]
    return found


def _problems(label: str, call: Callable[[], list[Diagnostic]]) -> list[str]:
    try:
        found = call()
    except grpc.RpcError as error:
        return [f"{label}: the pack failed ({error.code()}): {error.details()}"]
    return [f"{label}: {d.policy}: {d.message}" for d in found]


@pytest.mark.parametrize("stack", EXAMPLES)
@pytest.mark.parametrize("pack_name", ["cost", "safety"])
def test_each_value_unknown_in_turn_gives_no_error_and_no_violation(
    pack_name: str, stack: str, example_runs: dict[str, RecordedStack], request: Any
) -> None:
    pack: Pack = request.getfixturevalue(f"{pack_name}_pack")
    pack.configure(department_config(stack))
    problems: list[str] = []

    for item in filter(
        _read_by_a_resource_policy, items_from_run(example_runs[stack], outputs=False)
    ):
        for label, variant in _variants(item):
            problems += _problems(label, lambda variant=variant: pack.analyze(variant))

    outputs = items_from_run(example_runs[stack], outputs=True)
    for index, item in enumerate(outputs):
        if item.type not in STACK_TYPES:
            continue
        for label, variant in _variants(item):
            changed = [*outputs[:index], variant, *outputs[index + 1 :]]
            problems += _problems(label, lambda changed=changed: pack.analyze_stack(changed))

    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("stack", EXAMPLES)
def test_every_leaf_unknown_at_once_gives_no_diagnostic(
    stack: str, example_runs: dict[str, RecordedStack], cost_pack: Pack, safety_pack: Pack
) -> None:
    for pack in (cost_pack, safety_pack):
        pack.configure(department_config(stack))
        for outputs in (False, True):
            unknown = [
                replace(i, props=all_unknown(i.props))
                for i in items_from_run(example_runs[stack], outputs=outputs)
            ]
            found = pack.analyze_stack(unknown) if outputs else pack.analyze_each(unknown)
            assert found == [], f"{pack.name}: {found}"
