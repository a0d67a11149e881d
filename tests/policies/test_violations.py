"""Every policy fails, with a message that states the rule and the fix, on a crafted bad resource.

Each case starts from a resource of the physics example stack (or the whole stack, for the
stack policies), breaks one thing and sends it to the running pack over the protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from tests.infra.harness import end_date_in
from tests.policies.analyzer import Item, Pack, items_from_run
from tests.policies.conftest import department_config
from tests.policies.crafting import (
    BUCKET_ENCRYPTION,
    BUDGET,
    CR,
    DEPLOYMENT,
    LT,
    ROLE,
    SUBNET,
    big_reservation,
    bought_capacity_block,
    bucket_v2_inline,
    budget_set,
    capacity_block,
    container,
    data_volume_mapping,
    irsa_action,
    irsa_wildcard,
    no_forecast,
    one,
    patch,
    root_mapping_second,
    second_nat,
    stack_plus,
    stack_without,
    two_budgets,
    unencrypted_second_bucket_at_preview,
    untagged_without_default_tags,
    volume,
)
from tests.policies.recording import RecordedStack
from tests.policies.unknowns import all_unknown


@dataclass(frozen=True)
class Case:
    pack: str
    policy: str
    build: Callable[[list[Item]], Item | list[Item]]
    fragment: str
    config: dict[str, Any] | None = None
    # The violation is a resource's presence or a property's absence, which no unknown
    # value can change.
    structural: bool = False
    # Other policies the same fault rightly trips too.
    also: frozenset[str] = frozenset()


COST = [
    Case(
        "cost",
        "ec2-launch-template-instance-type-allowed",
        patch(LT, lambda p: p.update(instanceType="x2iedn.32xlarge")),
        "LaunchTemplate 'orca-physics-x86_64-gpu' names instance type x2iedn.32xlarge, which "
        "the department may not use (allowed: p5.*, g6e.*, c7i.4xlarge)",
    ),
    Case(
        "cost",
        "ec2-launch-template-instance-type-allowed",
        patch(LT, lambda p: p.update(instanceRequirements={"vcpuCount": {"min": 8.0}})),
        "lets EC2 launch any instance type that meets its instance_requirements, including "
        "types the department may not use (allowed: p5.*, g6e.*, c7i.4xlarge). Set "
        "instance_requirements.allowed_instance_types to allowed types",
        structural=True,
    ),
    Case(
        "cost",
        "ec2-launch-template-instance-type-allowed",
        patch(
            LT,
            lambda p: p.update(
                instanceRequirements={
                    "vcpuCount": {"min": 8.0},
                    "memoryMib": {"min": 16384.0},
                    "allowedInstanceTypes": ["p5.*", "x2iedn.*", "p*"],
                }
            ),
        ),
        "lets EC2 choose among x2iedn.*, p* (instance_requirements.allowed_instance_types), "
        "beyond the types the department may use",
    ),
    Case(
        "cost",
        "ec2-capacity-reservation-instance-type-allowed",
        patch(CR, lambda p: p.update(instanceType="p4d.24xlarge")),
        "reserves instance type p4d.24xlarge, which the department may not use",
    ),
    Case(
        "cost",
        "ec2-capacity-reservation-targeted",
        patch(CR, lambda p: p.update(instanceMatchCriteria="open")),
        "has instance match criteria open: an open reservation is used (and paid for) by any "
        "matching launch in the account. Set instance_match_criteria='targeted'.",
    ),
    Case(
        "cost",
        "ec2-capacity-reservation-end-date",
        patch(CR, lambda p: (p.update(endDateType="unlimited"), p.pop("endDate"))),
        "has no end date (end date type unlimited), so it is paid for until someone cancels "
        "it. Set end_date_type='limited' and an end_date.",
        structural=True,
    ),
    Case(
        "cost",
        "ec2-capacity-reservation-end-date",
        patch(CR, lambda p: p.update(endDate=end_date_in(400))),
        "reservations may end at most 366 days ahead. Move end_date closer",
    ),
    Case(
        "cost",
        "ec2-capacity-reservation-count",
        patch(CR, lambda p: p.update(instanceCount=16.0)),
        "reserves 16 instances; at most 4 per reservation. Lower instance_count",
    ),
    Case(
        "cost",
        "ec2-capacity-block-opt-in",
        capacity_block,
        "buys a capacity block, which is paid up front and cannot be cancelled",
        structural=True,
    ),
    Case(
        "cost",
        "ec2-capacity-reservation-committed-spend",
        # 16 x p5.48xlarge for two weeks on top of the reservations' 80,000 USD a month.
        stack_plus(bought_capacity_block(16.0, 14)),
        "16 x p5.48xlarge at 55.04 USD/h for 336 h (capacity block, paid up front) = 295,895 USD",
    ),
    Case(
        "cost",
        "ec2-capacity-block-opt-in",
        patch(LT, lambda p: p.update(instanceMarketOptions={"marketType": "capacity-block"})),
        "launches into capacity blocks (market type capacity-block)",
    ),
    Case(
        "cost",
        "ec2-capacity-reservation-committed-spend",
        big_reservation,
        "more than 100% of the budget of 100,000 USD a month",
    ),
    Case(
        "cost",
        "budgets-budget-monthly-department",
        stack_without(BUDGET),
        "The stack declares 0 AWS Budgets; a department stack needs exactly one monthly "
        "budget on its department tag.",
        structural=True,
        # Without a budget, the reservations' commitment cannot be checked either.
        also=frozenset({"ec2-capacity-reservation-committed-spend"}),
    ),
    Case(
        "cost",
        "budgets-budget-monthly-department",
        two_budgets,
        "The stack declares 2 AWS Budgets",
        structural=True,
    ),
    Case(
        "cost",
        "budgets-budget-monthly-department",
        budget_set(timeUnit="ANNUALLY"),
        "has timeUnit ANNUALLY; set it to MONTHLY.",
        # A yearly budget gives no monthly figure to hold the commitment against.
        also=frozenset({"ec2-capacity-reservation-committed-spend"}),
    ),
    Case(
        "cost",
        "budgets-budget-monthly-department",
        budget_set(costFilters=[{"name": "TagKeyValue", "values": ["user:department$biology"]}]),
        "is not filtered on the department's cost tag. Add the cost filter TagKeyValue = "
        "user:department$physics.",
    ),
    Case(
        "cost",
        "budgets-budget-monthly-department",
        lambda items: budget_set(notifications=no_forecast(one(items, BUDGET).props))(items),
        "has no FORECASTED notification with a subscriber",
    ),
    Case(
        "cost",
        "ec2-launch-template-spot-max-price",
        patch(
            LT,
            lambda p: p.update(
                instanceType="p5.48xlarge",
                instanceMarketOptions={"marketType": "spot", "spotOptions": {"maxPrice": "80"}},
            ),
        ),
        "bids up to 80.0 USD/h for spot p5.48xlarge, above its on-demand price of 55.04 USD/h. "
        "Lower spot_options.max_price to at most 55.04",
    ),
    Case(
        "cost",
        "ec2-launch-template-root-volume-size",
        patch(LT, lambda p: p["blockDeviceMappings"][0]["ebs"].update(volumeSize=4000.0)),
        "gives /dev/xvda 4000 GiB; root volumes may have at most 500 GiB",
    ),
    Case(
        "cost",
        "ec2-launch-template-root-volume-size",
        patch(LT, lambda p: root_mapping_second(p, 2000.0)),
        "gives /dev/xvda 2000 GiB; root volumes may have at most 500 GiB",
    ),
    Case(
        "cost",
        "ec2-nat-gateway-count",
        stack_plus(second_nat),
        "The stack declares 2 NAT gateways (orca-physics-nat, orca-physics-nat-b); at most 1",
        structural=True,
    ),
    Case(
        "cost",
        "ec2-vpc-endpoint-s3-gateway",
        stack_without("aws:ec2/vpcEndpoint:VpcEndpoint", "-s3"),
        "creates a VPC without an S3 gateway endpoint",
        structural=True,
    ),
    Case(
        "cost",
        "cloudwatch-log-group-retention",
        patch("aws:cloudwatch/logGroup:LogGroup", lambda p: p.pop("retentionInDays")),
        "keeps logs forever (no retention). Set retention_in_days, at most 365.",
        structural=True,
    ),
    Case(
        "cost",
        "cloudwatch-log-group-retention",
        patch("aws:cloudwatch/logGroup:LogGroup", lambda p: p.update(retentionInDays=3653.0)),
        "keeps logs 3653 days; at most 365.",
    ),
]

SAFETY = [
    Case(
        "safety",
        "ec2-subnet-no-public-ip",
        patch(SUBNET, lambda p: p.update(mapPublicIpOnLaunch=True), "private"),
        "is a burst subnet (tagged orca.research/managed-by=orca) that maps public IPs on "
        "launch, so every burst instance would be reachable from the internet. Set "
        "map_public_ip_on_launch=False.",
    ),
    Case(
        "safety",
        "ec2-subnet-no-public-ip",
        # Named for the NAT gateway, not "private": the tag, not the name, makes it ORCA's.
        patch(SUBNET, lambda p: p.update(mapPublicIpOnLaunch="true"), "public"),
        "Subnet 'orca-physics-public' is a burst subnet",
    ),
    Case(
        "safety",
        "ec2-launch-template-no-public-ip",
        patch(LT, lambda p: p.update(networkInterfaces=[{"associatePublicIpAddress": "true"}])),
        "asks for a public IP on network interface 0",
    ),
    Case(
        "safety",
        "ec2-launch-template-imdsv2",
        patch(LT, lambda p: p["metadataOptions"].update(httpTokens="optional")),
        "lets instances use IMDSv1 (http_tokens optional). Set "
        "metadata_options.http_tokens='required'.",
    ),
    Case(
        "safety",
        "ec2-launch-template-imdsv2",
        patch(LT, lambda p: p["metadataOptions"].update(httpPutResponseHopLimit=2.0)),
        "has metadata hop limit 2.0; it must be at most 1",
    ),
    Case(
        "safety",
        "ec2-launch-template-encrypted-volumes",
        patch(LT, lambda p: p["blockDeviceMappings"][0]["ebs"].update(encrypted="false")),
        "maps /dev/xvda to an unencrypted EBS volume. Set ebs.encrypted='true'.",
    ),
    Case(
        "safety",
        "ec2-launch-template-encrypted-volumes",
        patch(LT, lambda p: data_volume_mapping(p, encrypted="false")),
        "maps /dev/sdb to an unencrypted EBS volume. Set ebs.encrypted='true'.",
    ),
    Case(
        "safety",
        "ebs-volume-encrypted",
        volume,
        "Volume 'orca-physics-scratch' is not encrypted. Set encrypted=True.",
    ),
    Case(
        "safety",
        "s3-bucket-encrypted",
        stack_without(BUCKET_ENCRYPTION),
        "Bucket 'orca-physics-bundles' has no server-side encryption configuration",
        structural=True,
    ),
    Case(
        "safety",
        "s3-bucket-encrypted",
        # At preview both buckets' names are unknown; the configuration's dependency on its
        # own bucket leaves the other one uncovered.
        unencrypted_second_bucket_at_preview,
        "Bucket 'orca-physics-scratch' has no server-side encryption configuration. Add an "
        "aws.s3.BucketServerSideEncryptionConfiguration for it",
        structural=True,
    ),
    Case(
        "safety",
        "s3-bucket-encrypted",
        bucket_v2_inline([]),
        "BucketV2 'orca-physics-bundles' has no server-side encryption configuration",
        structural=True,
    ),
    Case(
        "safety",
        "sqs-queue-encrypted",
        patch("aws:sqs/queue:Queue", lambda p: p.update(sqsManagedSseEnabled=False)),
        "stores messages unencrypted. Set sqs_managed_sse_enabled=True",
    ),
    Case(
        "safety",
        "aws-taggable-resource-cost-tags",
        untagged_without_default_tags,
        "Vpc 'orca-physics-vpc' lacks the tags department, cost-center (neither its own tags "
        "nor its provider's default tags carry them)",
        structural=True,
    ),
    Case(
        "safety",
        "ec2-launch-template-tag-specifications",
        patch(LT, lambda p: p.update(tagSpecifications=p["tagSpecifications"][:1])),
        "does not tag the volumes it launches with department, cost-center",
    ),
    Case(
        "safety",
        "iam-role-irsa-trust-exact",
        patch(ROLE, irsa_wildcard, "runtime"),
        "trusts web identities with a StringLike condition. Use StringEquals",
    ),
    *(
        Case(
            "safety",
            "iam-role-irsa-trust-exact",
            patch(ROLE, irsa_action(action), "runtime"),
            f"trusts web identities with the actions {action!r}, which allow more than "
            "sts:AssumeRoleWithWebIdentity (or use NotAction). Set the trust statement's "
            "Action to exactly sts:AssumeRoleWithWebIdentity.",
        )
        for action in ("*", "sts:*", ["sts:AssumeRoleWithWebIdentity", "sts:AssumeRole"])
    ),
    Case(
        "safety",
        "kubernetes-deployment-resource-limits",
        patch(DEPLOYMENT, lambda p: container(p)["resources"].pop("limits")),
        "runs container 'runtime' without cpu and memory limits",
        structural=True,
    ),
    Case(
        "safety",
        "kubernetes-deployment-not-privileged",
        patch(
            DEPLOYMENT,
            lambda p: container(p)["securityContext"].update(privileged=True),
        ),
        "runs container 'runtime' privileged. Remove securityContext.privileged.",
    ),
]


def _run(case: Case, pack: Pack, physics: RecordedStack) -> list[Any]:
    """Analyze the crafted resource (its inputs), or the crafted stack (its outputs)."""
    pack.configure(case.config or department_config("physics"))
    built = case.build(items_from_run(physics, outputs=False))
    if isinstance(built, Item):
        return pack.analyze(built)
    return pack.analyze_stack(case.build(items_from_run(physics, outputs=True)))


@pytest.mark.parametrize("case", COST + SAFETY, ids=lambda c: f"{c.policy}:{c.fragment[:30]}")
def test_crafted_bad_resource_fails_its_policy_with_rule_and_fix(
    case: Case, example_runs: dict[str, RecordedStack], request: pytest.FixtureRequest
) -> None:
    pack: Pack = request.getfixturevalue(f"{case.pack}_pack")

    found = _run(case, pack, example_runs["physics"])

    assert {d.policy for d in found} == {case.policy} | case.also, found
    assert all(d.mandatory for d in found)
    assert any(case.fragment in d.message for d in found), [d.message for d in found]


@pytest.mark.parametrize(
    "case",
    [c for c in COST + SAFETY if not c.structural],
    ids=lambda c: f"{c.policy}:{c.fragment[:30]}",
)
def test_crafted_bad_resource_with_values_unknown_at_preview_is_skipped(
    case: Case, example_runs: dict[str, RecordedStack], request: pytest.FixtureRequest
) -> None:
    pack: Pack = request.getfixturevalue(f"{case.pack}_pack")
    pack.configure(case.config or department_config("physics"))
    runs = example_runs["physics"]
    built = case.build(items_from_run(runs, outputs=False))
    if isinstance(built, Item):
        found = pack.analyze(replace(built, props=all_unknown(built.props)))
    else:
        stack = case.build(items_from_run(runs, outputs=True))
        found = pack.analyze_stack([replace(i, props=all_unknown(i.props)) for i in stack])

    assert found == []
