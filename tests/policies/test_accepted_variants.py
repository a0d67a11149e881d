"""Sound shapes the example stacks do not use pass every policy of their pack.

Each variant changes the physics example in a way that keeps it within the rules (another
resource type, another property shape, a value set elsewhere) and must cause no diagnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.infra.harness import end_date_in
from tests.policies.analyzer import Item, Pack, items_from_run
from tests.policies.conftest import department_config
from tests.policies.crafting import (
    CR,
    LT,
    SUBNET,
    Build,
    as_bucket_v2,
    bought_capacity_block,
    bucket_names_unknown,
    bucket_v2_inline,
    capacity_block,
    one,
    patch,
    stack_plus,
    with_unknown_default_tags,
)
from tests.policies.recording import RecordedStack

OPT_IN = {"ec2-capacity-block-opt-in": {"allowCapacityBlocks": True}}


@dataclass(frozen=True)
class Variant:
    pack: str
    name: str
    build: Build
    config: dict[str, Any] | None = None


def _subnet_of_another_owner(items: list[Item]) -> Item:
    subnet = one(items, SUBNET, "private")
    subnet.props["tags"] = {"department": "physics", "cost-center": "cc-4410"}
    subnet.props["mapPublicIpOnLaunch"] = True
    provider = {k: v for k, v in (subnet.provider or {}).items() if k != "defaultTags"}
    return Item(subnet.type, "shared-private-a", subnet.props, provider)


def _without_own_tags(type_: str) -> Callable[[list[Item]], Item]:
    return patch(type_, lambda p: p.pop("tags"))


VARIANTS = [
    Variant(
        "cost",
        "instance requirements limited to allowed types",
        patch(
            LT,
            lambda p: p.update(
                instanceRequirements={
                    "vcpuCount": {"min": 8.0},
                    "memoryMib": {"min": 16384.0},
                    "allowedInstanceTypes": ["p5.*", "c7i.4xlarge"],
                }
            ),
        ),
    ),
    Variant("cost", "capacity block with the opt-in", capacity_block, OPT_IN),
    Variant(
        "cost",
        "reservation ending a day within maxDaysAhead",
        patch(CR, lambda p: p.update(endDate=end_date_in(365))),
    ),
    Variant(
        "cost",
        "bought capacity block within the budget",
        stack_plus(bought_capacity_block(2.0, 7)),
        OPT_IN,
    ),
    Variant(
        "safety",
        "resource tagged only by provider default tags",
        _without_own_tags("aws:ec2/vpc:Vpc"),
    ),
    Variant("safety", "public-IP subnet not tagged as ORCA's", _subnet_of_another_owner),
    Variant("safety", "bucket and configuration of the V2 types", as_bucket_v2),
    Variant("safety", "BucketV2 with inline encryption", bucket_v2_inline(["aws:kms"])),
    Variant("safety", "bucket paired by dependency at preview", bucket_names_unknown),
    Variant(
        "safety",
        "untagged resource whose provider's default tags are unknown",
        lambda items: with_unknown_default_tags(_without_own_tags("aws:ec2/vpc:Vpc")(items)),
    ),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_sound_variant_passes_every_policy_of_its_pack(
    variant: Variant, example_runs: dict[str, RecordedStack], request: pytest.FixtureRequest
) -> None:
    pack: Pack = request.getfixturevalue(f"{variant.pack}_pack")
    pack.configure({**department_config("physics"), **(variant.config or {})})
    physics = example_runs["physics"]

    built = variant.build(items_from_run(physics, outputs=False))
    if isinstance(built, Item):
        found = pack.analyze(built)
    else:
        found = pack.analyze_stack(variant.build(items_from_run(physics, outputs=True)))

    assert found == []
