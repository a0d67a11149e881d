"""The pod contract: what a researcher writes, accepted or refused with a reason."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from orca.catalog import Catalog
from orca.contract import (
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


def test_orca_bookkeeping_annotations_are_not_mistaken_for_typos() -> None:
    p = pod({INSTANCE_TYPE: "m7i.large", "orca.research/launch-attempt": "1"})

    assert resolve(p).instance_type.name == "m7i.large"


def test_suggestions_prefer_types_the_department_allows() -> None:
    messages = rejections(pod({INSTANCE_TYPE: "p5.48xlarg"}), allowed_instance_types=["p5e.*"])

    assert "did you mean p5e.48xlarge" in messages[INSTANCE_TYPE]
