"""Both packs, started as the CLI starts them, on the two example department stacks."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from tests.infra.harness import EXAMPLE_DATES_WRITTEN, INFRA, stack_file_config
from tests.policies.analyzer import Pack, items_from_run
from tests.policies.conftest import department_config
from tests.policies.recording import RecordedStack, record_stack

COST_POLICIES = {
    "ec2-launch-template-instance-type-allowed",
    "ec2-capacity-reservation-instance-type-allowed",
    "ec2-capacity-reservation-targeted",
    "ec2-capacity-reservation-end-date",
    "ec2-capacity-reservation-count",
    "ec2-capacity-block-opt-in",
    "ec2-capacity-reservation-committed-spend",
    "budgets-budget-monthly-department",
    "ec2-launch-template-spot-max-price",
    "ec2-launch-template-root-volume-size",
    "ec2-nat-gateway-count",
    "ec2-vpc-endpoint-s3-gateway",
    "cloudwatch-log-group-retention",
}
SAFETY_POLICIES = {
    "ec2-subnet-no-public-ip",
    "ec2-launch-template-no-public-ip",
    "ec2-launch-template-imdsv2",
    "ec2-launch-template-encrypted-volumes",
    "ebs-volume-encrypted",
    "s3-bucket-encrypted",
    "sqs-queue-encrypted",
    "aws-taggable-resource-cost-tags",
    "ec2-launch-template-tag-specifications",
    "iam-role-irsa-trust-exact",
    "kubernetes-deployment-resource-limits",
    "kubernetes-deployment-not-privileged",
}
RESOURCE_PREFIXES = (
    "ec2-",
    "ebs-",
    "s3-",
    "sqs-",
    "iam-",
    "budgets-",
    "cloudwatch-",
    "kubernetes-",
    "aws-taggable-resource-",
)
# Thresholds an institution sets per policy group live in these policies' config schemas.
CONFIGURABLE = {
    "ec2-launch-template-instance-type-allowed": "allowedInstanceTypes",
    "ec2-capacity-reservation-end-date": "maxDaysAhead",
    "ec2-capacity-reservation-count": "maxInstanceCount",
    "ec2-capacity-block-opt-in": "allowCapacityBlocks",
    "ec2-capacity-reservation-committed-spend": "maxBudgetShare",
    "ec2-launch-template-root-volume-size": "maxRootVolumeGib",
    "ec2-nat-gateway-count": "maxNatGateways",
    "cloudwatch-log-group-retention": "maxRetentionDays",
    "ec2-launch-template-imdsv2": "maxHopLimit",
    "ec2-subnet-no-public-ip": "burstSubnetTags",
    "iam-role-irsa-trust-exact": "audience",
    "aws-taggable-resource-cost-tags": "requiredTags",
}


def _diagnostics(pack: Pack, run: RecordedStack, stack: str) -> list[Any]:
    pack.configure(department_config(stack))
    found = pack.analyze_each(items_from_run(run, outputs=False))
    return found + pack.analyze_stack(items_from_run(run, outputs=True))


@pytest.mark.parametrize("pack_name", ["cost", "safety"])
def test_each_pack_describes_every_policy_with_its_rule_fix_and_level(
    pack_name: str, request: pytest.FixtureRequest
) -> None:
    pack: Pack = request.getfixturevalue(f"{pack_name}_pack")
    info = pack.info()
    names = {p.name for p in info.policies}

    assert info.name == f"orca-{pack_name}"
    assert names == (COST_POLICIES if pack_name == "cost" else SAFETY_POLICIES)
    for policy in info.policies:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", policy.name), policy.name
        assert policy.name.startswith(RESOURCE_PREFIXES), policy.name
        assert policy.description.startswith("Checks that"), policy.name
        assert policy.remediation_steps, policy.name
        assert policy.enforcementLevel == 1, f"{policy.name} is not mandatory"  # MANDATORY
        if policy.name in CONFIGURABLE:
            schema = dict(policy.configSchema.properties)
            assert "default" in schema[CONFIGURABLE[policy.name]], policy.name


def test_biology_passes_every_cost_and_safety_policy(
    example_runs: dict[str, RecordedStack], cost_pack: Pack, safety_pack: Pack
) -> None:
    run = example_runs["biology"]
    assert _diagnostics(cost_pack, run, "biology") == []
    assert _diagnostics(safety_pack, run, "biology") == []


def test_physics_passes_every_cost_and_safety_policy(
    example_runs: dict[str, RecordedStack], cost_pack: Pack, safety_pack: Pack
) -> None:
    run = example_runs["physics"]
    assert _diagnostics(cost_pack, run, "physics") == []
    assert _diagnostics(safety_pack, run, "physics") == []


def test_reservations_that_commit_more_than_the_budget_holds_are_refused(
    cost_pack: Pack,
) -> None:
    # Two p5.48xlarge cost about 80,000 USD a month at list price.
    config = {**stack_file_config("physics"), "orca:budget": "25000"}
    run = record_stack(config, stack="physics")

    found = _diagnostics(cost_pack, run, "physics")

    assert [d.policy for d in found] == ["ec2-capacity-reservation-committed-spend"]
    assert found[0].mandatory
    assert "2 x p5.48xlarge at 55.04 USD/h" in found[0].message
    assert "budget of 25,000 USD a month" in found[0].message
    assert "raise the budget" in found[0].message


def test_example_reservation_ends_as_far_ahead_of_today_as_when_it_was_written() -> None:
    written = yaml.safe_load((INFRA / "Pulumi.physics.yaml").read_text())["config"]
    ends = datetime.fromisoformat(written["orca:capacityReservations"][0]["endDate"])
    ahead = ends.date() - EXAMPLE_DATES_WRITTEN

    moved = stack_file_config("physics")["orca:capacityReservations"][0]["endDate"]

    assert datetime.fromisoformat(moved).date() - datetime.now(UTC).date() == ahead
