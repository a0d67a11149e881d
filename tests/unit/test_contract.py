"""The pod contract: what a researcher writes, accepted or refused with a reason."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from orca.aws.model import OPEN_RESERVATIONS, ReservationChoice
from orca.catalog import Catalog
from orca.contract import (
    AVAILABILITY_ZONE,
    CAPACITY_RESERVATION,
    FALLBACK_INSTANCE_TYPES,
    INSTANCE_TYPE,
    LAUNCH_TYPE,
    MAX_LIFETIME,
    MAX_SPOT_PRICE,
    ContractError,
    resolve_launch,
)
from tests.unit.helpers import case_documents, pod, settings

ZONES = ["us-east-1a", "us-east-1b"]
CATALOG = Catalog.shipped()


def resolve(p: dict, **overrides):  # type: ignore[no-untyped-def]
    return resolve_launch(p, settings(**overrides), CATALOG, ZONES)


def rejections(p: dict, **overrides) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractError) as caught:
        resolve(p, **overrides)
    return {r.annotation: r.message() for r in caught.value.rejections}


def test_readme_gpu_pod_resolves_to_p5_spot_on_the_gpu_template() -> None:
    [gpu_pod] = case_documents("01-gpu-training-spot.yaml")

    spec = resolve(gpu_pod)

    assert spec.instance_type.name == "p5.48xlarge"
    assert spec.instance_type.gpus == 8
    assert spec.market == "spot"
    assert spec.max_spot_price is None
    assert spec.launch_template_kind == "x86_64-gpu"
    assert spec.lifetime == timedelta(hours=24)
    assert spec.lifetime_source == "the department's default"


def test_cpu_batch_pod_uses_its_max_lifetime_and_the_cpu_template() -> None:
    [cpu_pod] = case_documents("02-cpu-batch.yaml")

    spec = resolve(cpu_pod)

    assert spec.instance_type.name == "c7i.4xlarge"
    assert spec.market == "on-demand"
    assert spec.launch_template_kind == "x86_64"
    assert spec.lifetime == timedelta(hours=2)


def test_active_deadline_shorter_than_max_lifetime_bounds_the_lifetime() -> None:
    p = pod({INSTANCE_TYPE: "m7i.large", MAX_LIFETIME: "6h"}, activeDeadlineSeconds=3600)

    spec = resolve(p)

    assert spec.lifetime == timedelta(hours=1)
    assert spec.lifetime_source == "activeDeadlineSeconds"


def test_an_active_deadline_past_the_departments_ceiling_is_cut_to_the_ceiling() -> None:
    p = pod({INSTANCE_TYPE: "m7i.large"}, activeDeadlineSeconds=30 * 24 * 3600)

    spec = resolve(p)

    assert spec.lifetime == timedelta(days=14)
    assert spec.lifetime_source == (
        "the department's ceiling of 336h, shorter than activeDeadlineSeconds"
    )


def test_every_bad_annotation_case_is_refused_naming_annotation_value_and_allowed() -> None:
    expected = {
        "bad-unknown-type": (INSTANCE_TYPE, "'p9.96xlarge'"),
        "bad-too-many-gpus": (INSTANCE_TYPE, "8 nvidia.com/gpu"),
        "bad-launch-type": (LAUNCH_TYPE, "'spotty'"),
        "bad-spot-price": (MAX_SPOT_PRICE, "'-2'"),
        "bad-lifetime": (MAX_LIFETIME, "'forever'"),
        "bad-no-type": (INSTANCE_TYPE, "is not set"),
    }
    for document in case_documents("05-bad-annotations.yaml"):
        annotation, fragment = expected[document["metadata"]["name"]]

        messages = rejections(document)

        assert annotation in messages, document["metadata"]["name"]
        assert fragment in messages[annotation]
        assert "Allowed: " in messages[annotation]


def test_unknown_type_suggests_the_exact_name() -> None:
    messages = rejections(pod({INSTANCE_TYPE: "p6.48xlarge"}))

    assert "did you mean p6-b200.48xlarge" in messages[INSTANCE_TYPE]


def test_type_outside_the_department_allow_list_is_refused_with_the_list() -> None:
    messages = rejections(pod({INSTANCE_TYPE: "p5.48xlarge"}), allowed_instance_types=["g6e.*"])

    assert "does not allow" in messages[INSTANCE_TYPE]
    assert "g6e.*" in messages[INSTANCE_TYPE]


def test_family_wildcard_allows_every_size() -> None:
    spec = resolve(pod({INSTANCE_TYPE: "g6e.12xlarge"}), allowed_instance_types=["g6e.*"])

    assert spec.instance_type.name == "g6e.12xlarge"


def test_spot_price_above_on_demand_is_refused() -> None:
    on_demand = CATALOG.get("g6.xlarge").on_demand_usd_per_hour  # type: ignore[union-attr]
    above = str(on_demand + Decimal("0.01"))
    p = pod({INSTANCE_TYPE: "g6.xlarge", LAUNCH_TYPE: "spot", MAX_SPOT_PRICE: above})

    messages = rejections(p)

    assert "above the on-demand price" in messages[MAX_SPOT_PRICE]


def test_spot_price_at_on_demand_is_accepted() -> None:
    on_demand = CATALOG.get("g6.xlarge").on_demand_usd_per_hour  # type: ignore[union-attr]
    p = pod({INSTANCE_TYPE: "g6.xlarge", LAUNCH_TYPE: "spot", MAX_SPOT_PRICE: str(on_demand)})

    assert resolve(p).max_spot_price == on_demand


def test_spot_price_on_an_on_demand_pod_is_refused() -> None:
    messages = rejections(pod({INSTANCE_TYPE: "g6.xlarge", MAX_SPOT_PRICE: "0.5"}))

    assert "only to spot" in messages[MAX_SPOT_PRICE]


def test_lifetime_beyond_the_department_ceiling_is_refused() -> None:
    p = pod({INSTANCE_TYPE: "m7i.large", MAX_LIFETIME: "400h"})

    messages = rejections(p, max_lifetime_ceiling=timedelta(days=2))

    assert "longer than the department allows" in messages[MAX_LIFETIME]
    assert "48h" in messages[MAX_LIFETIME]


def test_zone_without_a_burst_subnet_is_refused_with_the_zones_there_are() -> None:
    messages = rejections(
        pod({INSTANCE_TYPE: "m7i.large", "orca.research/availability-zone": "us-west-2a"})
    )

    assert "us-east-1a, us-east-1b" in messages["orca.research/availability-zone"]


def test_root_volume_out_of_range_is_refused() -> None:
    messages = rejections(pod({INSTANCE_TYPE: "m7i.large", "orca.research/root-volume-gib": "5"}))

    assert "from 30 to 16384" in messages["orca.research/root-volume-gib"]


def test_workload_template_supplies_type_market_and_price() -> None:
    templates = {
        "h100-spot": {"instance_type": "p5.48xlarge", "launch_type": "spot", "max_spot_price": "40"}
    }
    p = pod({"orca.research/workload-template": "h100-spot"})

    spec = resolve(p, workload_templates=templates)

    assert (spec.instance_type.name, spec.market, spec.max_spot_price) == (
        "p5.48xlarge",
        "spot",
        Decimal("40"),
    )
    assert spec.workload_template == "h100-spot"


def test_unknown_workload_template_lists_the_department_templates() -> None:
    templates = {"l40s": {"instance_type": "g6e.xlarge"}}

    messages = rejections(
        pod({"orca.research/workload-template": "h200"}), workload_templates=templates
    )

    assert "l40s" in messages["orca.research/workload-template"]


def test_several_problems_are_all_reported_at_once() -> None:
    p = pod({INSTANCE_TYPE: "g6.xlarge", LAUNCH_TYPE: "spotty", MAX_LIFETIME: "soon"})

    messages = rejections(p)

    assert set(messages) == {LAUNCH_TYPE, MAX_LIFETIME}


def test_init_container_requests_count_as_the_scheduler_counts_them() -> None:
    big_init = {
        "name": "prepare",
        "image": "busybox",
        "resources": {"requests": {"memory": "64Gi"}},
    }
    p = pod({INSTANCE_TYPE: "c7i.4xlarge"}, initContainers=[big_init])

    messages = rejections(p)

    assert "memory" in messages[INSTANCE_TYPE]


def test_arm64_type_without_an_arm64_template_is_refused() -> None:
    templates = {"x86_64": "lt-0123456789abcdef1"}

    messages = rejections(pod({INSTANCE_TYPE: "m7g.large"}), launch_templates=templates)

    assert "no launch template for arm64" in messages[INSTANCE_TYPE]


def test_a_misspelt_orca_annotation_is_named_with_the_right_spelling() -> None:
    p = pod({"orca.research/instance_type": "m7i.large"})

    messages = rejections(p)

    assert "did you mean orca.research/instance-type?" in messages["orca.research/instance_type"]


def test_a_stray_space_around_a_value_is_ignored() -> None:
    p = pod({INSTANCE_TYPE: "g6e.2xlarge ", "orca.research/launch-type": " spot"})

    spec = resolve(p)

    assert (spec.instance_type.name, spec.market) == ("g6e.2xlarge", "spot")


def test_orca_bookkeeping_annotations_are_not_mistaken_for_typos() -> None:
    p = pod({INSTANCE_TYPE: "m7i.large", "orca.research/launch-attempt": "1"})

    assert resolve(p).instance_type.name == "m7i.large"


def test_suggestions_prefer_types_the_department_allows() -> None:
    messages = rejections(pod({INSTANCE_TYPE: "p5.48xlarg"}), allowed_instance_types=["p5e.*"])

    assert "did you mean p5e.48xlarge" in messages[INSTANCE_TYPE]


# Capacity reservations.

GROUP_ARN = "arn:aws:resource-groups:us-east-1:123456789012:group/orca-physics-pool"
RESERVATION = "cr-0123456789abcdef0"


def reservation_pod(value: str, **annotations: str) -> dict:  # type: ignore[type-arg]
    return pod({INSTANCE_TYPE: "p5.48xlarge", CAPACITY_RESERVATION: value, **annotations})


def reservation_rejections(p: dict, **overrides) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractError) as caught:
        resolve(p, **overrides)
    return [r.message() for r in caught.value.rejections if r.annotation == CAPACITY_RESERVATION]


def test_without_the_annotation_or_with_open_matching_open_reservations_are_used() -> None:
    assert resolve(pod({INSTANCE_TYPE: "p5.48xlarge"})).reservation == OPEN_RESERVATIONS
    assert resolve(reservation_pod("open")).reservation == OPEN_RESERVATIONS


def test_none_avoids_reservations_on_demand_and_on_spot() -> None:
    assert resolve(reservation_pod("none")).reservation == ReservationChoice("none")
    spot = resolve(reservation_pod("none", **{LAUNCH_TYPE: "spot"}))
    assert spot.reservation == ReservationChoice("none")


def test_group_targets_the_department_reservation_group() -> None:
    spec = resolve(reservation_pod("group"), capacity_reservation_group_arn=GROUP_ARN)

    assert spec.reservation == ReservationChoice("targeted", group_arn=GROUP_ARN)
    assert spec.market == "on-demand"


@pytest.mark.parametrize("reservation", [RESERVATION, "cr-0a1b2c3d"])
def test_a_reservation_id_in_the_pinned_zone_targets_that_reservation(reservation: str) -> None:
    spec = resolve(reservation_pod(reservation, **{AVAILABILITY_ZONE: "us-east-1a"}))

    assert spec.reservation == ReservationChoice("targeted", reservation_id=reservation)
    assert spec.availability_zone == "us-east-1a"


def test_group_without_a_department_group_names_the_stack_without_reservations() -> None:
    [message] = reservation_rejections(reservation_pod("group"))

    assert message == (
        "orca.research/capacity-reservation is 'group': the physics department's stack "
        "configures no capacity reservations, so it has no reservation group. Allowed: open or "
        "none (the department's computing staff can add reservations to its stack)."
    )


@pytest.mark.parametrize("target", ["group", RESERVATION])
def test_a_reservation_target_with_spot_is_refused_since_reservations_serve_on_demand(
    target: str,
) -> None:
    p = reservation_pod(target, **{LAUNCH_TYPE: "spot", AVAILABILITY_ZONE: "us-east-1a"})

    [message] = reservation_rejections(p, capacity_reservation_group_arn=GROUP_ARN)

    assert message == (
        f"orca.research/capacity-reservation is {target!r}: On-Demand Capacity Reservations "
        "serve only on-demand launches, never spot. Allowed: open or none with "
        "orca.research/launch-type spot; or orca.research/launch-type on-demand to use a "
        "reservation."
    )


def test_a_spot_workload_template_with_a_reservation_target_is_refused() -> None:
    templates = {"cheap-h100": {"instance_type": "p5.48xlarge", "launch_type": "spot"}}
    p = pod({"orca.research/workload-template": "cheap-h100", CAPACITY_RESERVATION: "group"})

    [message] = reservation_rejections(
        p, workload_templates=templates, capacity_reservation_group_arn=GROUP_ARN
    )

    assert "serve only on-demand launches, never spot" in message


def test_a_reservation_id_without_a_zone_asks_to_pin_the_reservation_zone() -> None:
    [message] = reservation_rejections(reservation_pod(RESERVATION))

    assert message == (
        f"orca.research/capacity-reservation is {RESERVATION!r}: capacity reservations are "
        "zonal, and the pod names no zone: pin the reservation's zone with "
        "orca.research/availability-zone. Allowed: a reservation id together with "
        "orca.research/availability-zone set to the reservation's zone."
    )


@pytest.mark.parametrize(
    "value",
    ["Group", "reserved", "cr-0123", "cr-0123456789ABCDEF0", "cr-0123456789abcdef01", ""],
)
def test_anything_else_is_refused_listing_the_choices(value: str) -> None:
    [message] = reservation_rejections(
        reservation_pod(value, **{AVAILABILITY_ZONE: "us-east-1a"}),
        capacity_reservation_group_arn=GROUP_ARN,
    )

    assert message == (
        f"orca.research/capacity-reservation is {value!r}: not a capacity reservation choice. "
        "Allowed: open (the default: matching open reservations are used), none (never use a "
        "reservation), group (only the department's reservation group) or a reservation id "
        "(cr- and 17 hex digits)."
    )


def test_spot_with_a_reservation_id_and_no_zone_gets_both_reasons_with_the_others() -> None:
    p = reservation_pod(RESERVATION, **{LAUNCH_TYPE: "spot", MAX_LIFETIME: "soon"})

    with pytest.raises(ContractError) as caught:
        resolve(p)

    problems = [(r.annotation, r.problem) for r in caught.value.rejections]
    assert [a for a, _ in problems] == [MAX_LIFETIME, CAPACITY_RESERVATION, CAPACITY_RESERVATION]
    assert "never spot" in problems[1][1]
    assert "zonal" in problems[2][1]


def gpu_containers(gpus: int) -> list[dict[str, Any]]:
    limits = {"nvidia.com/gpu": gpus}
    return [{"name": "c", "image": "trainer", "resources": {"limits": limits}}]


def test_fallback_types_are_kept_in_order_and_each_attempt_walks_the_zones_first() -> None:
    p = pod(
        {INSTANCE_TYPE: "p5.48xlarge", FALLBACK_INSTANCE_TYPES: " p5e.48xlarge, p4d.24xlarge "},
        gpu_containers(8),
    )

    spec = resolve(p)

    assert spec.instance_type_names == ("p5.48xlarge", "p5e.48xlarge", "p4d.24xlarge")
    tried = [spec.for_attempt(attempt, zones=2).instance_type.name for attempt in range(1, 8)]
    assert tried == [
        "p5.48xlarge", "p5.48xlarge", "p5e.48xlarge", "p5e.48xlarge",
        "p4d.24xlarge", "p4d.24xlarge", "p5.48xlarge",
    ]  # fmt: skip
    assert spec.for_attempt(3, zones=2).launch_template_kind == "x86_64-gpu"


def test_a_fallback_of_another_kind_boots_from_its_own_launch_template() -> None:
    spec = resolve(pod({INSTANCE_TYPE: "m7i.large", FALLBACK_INSTANCE_TYPES: "m7g.large"}))

    arm = spec.for_attempt(2, zones=1)

    assert (arm.instance_type.name, arm.launch_template_kind) == ("m7g.large", "arm64")


def test_bad_fallback_types_are_named_one_by_one() -> None:
    p = pod(
        {
            INSTANCE_TYPE: "g6e.12xlarge",
            FALLBACK_INSTANCE_TYPES: "g6e.xlarge,p9.96xlarge,g6e.12xlarge,c7i.4xlarge",
        },
        gpu_containers(4),
    )

    message = rejections(p, allowed_instance_types=["g6e.*", "p*"])[FALLBACK_INSTANCE_TYPES]

    assert "g6e.xlarge: the pod does not fit" in message
    assert "p9.96xlarge: no such EC2 instance type" in message
    assert "names g6e.12xlarge, the pod's first choice" in message
    assert "c7i.4xlarge: the physics department does not allow this type" in message


def test_a_targeted_reservation_cannot_fall_back() -> None:
    p = pod(
        {
            INSTANCE_TYPE: "m7i.large",
            FALLBACK_INSTANCE_TYPES: "m7i.xlarge",
            "orca.research/capacity-reservation": "cr-0123456789abcdef0",
            "orca.research/availability-zone": "us-east-1a",
        }
    )

    message = rejections(p)[FALLBACK_INSTANCE_TYPES]

    assert "holds one instance type, so the pod cannot fall back" in message


def test_a_capacity_block_pod_names_its_block_and_zone() -> None:
    block = {
        INSTANCE_TYPE: "p5.48xlarge",
        LAUNCH_TYPE: "capacity-block",
        "orca.research/capacity-reservation": "cr-0123456789abcdef0",
        "orca.research/availability-zone": "us-east-1a",
    }

    spec = resolve(pod(block))

    assert spec.market == "capacity-block"
    assert spec.reservation == ReservationChoice.reservation("cr-0123456789abcdef0")
    without_id = rejections(pod({**block, "orca.research/capacity-reservation": "group"}))
    assert (
        "goes into one capacity block, named by its reservation id"
        in without_id["orca.research/capacity-reservation"]
    )
    without_zone = {k: v for k, v in block.items() if k != "orca.research/availability-zone"}
    assert (
        "pin the reservation's zone"
        in rejections(pod(without_zone))["orca.research/capacity-reservation"]
    )


def test_fallback_types_separated_by_spaces_are_told_to_use_commas() -> None:
    message = rejections(
        pod({INSTANCE_TYPE: "m7i.large", FALLBACK_INSTANCE_TYPES: "m7i.xlarge c7i.large"})
    )[FALLBACK_INSTANCE_TYPES]

    assert "separate the types with commas, not spaces ('m7i.xlarge c7i.large')" in message
    assert "no such EC2 instance type" not in message
