"""A pod's effective request, counted as the scheduler does, and whether a type holds it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from orca.catalog import Catalog, InstanceType
from orca.resources import (
    GIB,
    MIB,
    InvalidResourceQuantity,
    PodResources,
    effective_requests,
    fits,
    format_cpu,
    format_memory,
    memory_reserve_bytes,
    usable_memory_bytes,
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.shipped()


def type_named(catalog: Catalog, name: str) -> InstanceType:
    found = catalog.get(name)
    assert found is not None, name
    return found


def container(
    name: str,
    *,
    requests: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    restart_policy: str | None = None,
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    c: dict[str, Any] = {"name": name, "image": "busybox", "resources": resources}
    if restart_policy:
        c["restartPolicy"] = restart_policy
    return c


# The README's example pod (cases/pods/01-gpu-training-spot.yaml), as the API serves it.
README_GPU_POD: dict[str, Any] = {
    "restartPolicy": "Never",
    "containers": [
        container("trainer", limits={"nvidia.com/gpu": 8, "memory": "1024Gi", "cpu": "192"})
    ],
}

# cases/pods/02-cpu-batch.yaml
CPU_BATCH_POD: dict[str, Any] = {
    "containers": [container("align", requests={"cpu": "8", "memory": "16Gi"})],
}


# --- fitting --------------------------------------------------------------------------


def test_readme_gpu_pod_asks_for_what_its_limits_say() -> None:
    assert effective_requests(README_GPU_POD) == PodResources(
        cpu_millicores=192_000, memory_bytes=1024 * GIB, gpus=8
    )


def test_readme_gpu_pod_fits_p5_48xlarge(catalog: Catalog) -> None:
    assert fits(effective_requests(README_GPU_POD), type_named(catalog, "p5.48xlarge")) == []


def test_readme_gpu_pod_does_not_fit_p4d_for_lack_of_vcpus(catalog: Catalog) -> None:
    problems = fits(effective_requests(README_GPU_POD), type_named(catalog, "p4d.24xlarge"))

    assert problems == ["the pod asks for 192 vCPU but p4d.24xlarge has 96 vCPU"]


def test_eight_gpus_do_not_fit_g6_xlarge(catalog: Catalog) -> None:
    pod = {"containers": [container("c", limits={"nvidia.com/gpu": 8})]}

    problems = fits(effective_requests(pod), type_named(catalog, "g6.xlarge"))

    assert problems == ["the pod asks for 8 nvidia.com/gpu but g6.xlarge has 1 (NVIDIA L4)"]


def test_gpu_pod_on_a_cpu_type_is_told_there_are_none(catalog: Catalog) -> None:
    pod = {"containers": [container("c", limits={"nvidia.com/gpu": 1})]}

    problems = fits(effective_requests(pod), type_named(catalog, "m7i.large"))

    assert problems == [
        "the pod asks for 1 nvidia.com/gpu but m7i.large has none (no accelerators)"
    ]


def test_cpu_batch_pod_fits_c7i_4xlarge(catalog: Catalog) -> None:
    assert fits(effective_requests(CPU_BATCH_POD), type_named(catalog, "c7i.4xlarge")) == []


def test_pod_asking_the_full_memory_of_a_type_does_not_fit(catalog: Catalog) -> None:
    pod = {"containers": [container("c", requests={"memory": "32Gi"})]}

    [problem] = fits(effective_requests(pod), type_named(catalog, "c7i.4xlarge"))

    assert problem.startswith("the pod asks for 32Gi of memory but c7i.4xlarge has 32Gi")
    assert "30.4Gi is left for pods" in problem


def test_every_shortfall_gets_its_own_message(catalog: Catalog) -> None:
    pod = {
        "containers": [container("c", limits={"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": 2})]
    }

    problems = fits(effective_requests(pod), type_named(catalog, "g6.xlarge"))

    assert len(problems) == 3
    assert [p.split(" but ")[0] for p in problems] == [
        "the pod asks for 8 vCPU",
        "the pod asks for 64Gi of memory",
        "the pod asks for 2 nvidia.com/gpu",
    ]


def test_neuron_devices_are_counted_under_either_resource_name(catalog: Catalog) -> None:
    inf2 = type_named(catalog, "inf2.xlarge")
    one = {"containers": [container("c", limits={"aws.amazon.com/neurondevice": 1})]}
    two = {"containers": [container("c", limits={"aws.amazon.com/neuron": 2})]}

    assert fits(effective_requests(one), inf2) == []
    assert fits(effective_requests(two), inf2) == [
        "the pod asks for 2 aws.amazon.com/neuron but inf2.xlarge has 1 (Inferentia2)"
    ]


def test_gpu_pod_does_not_fit_a_neuron_type(catalog: Catalog) -> None:
    pod = {"containers": [container("c", limits={"nvidia.com/gpu": 1})]}

    problems = fits(effective_requests(pod), type_named(catalog, "trn1.2xlarge"))

    assert problems == ["the pod asks for 1 nvidia.com/gpu but trn1.2xlarge has none (1x Trainium)"]


def test_pod_without_requests_fits_the_smallest_type(catalog: Catalog) -> None:
    pod = {"containers": [{"name": "c", "image": "busybox"}]}

    assert effective_requests(pod) == PodResources()
    assert fits(PodResources(), type_named(catalog, "t3.medium")) == []


# --- counting as the scheduler does ---------------------------------------------------


def test_app_containers_add_up() -> None:
    pod = {
        "containers": [
            container("a", requests={"cpu": "500m", "memory": "1Gi"}),
            container("b", requests={"cpu": "1500m", "memory": "512Mi"}),
        ]
    }

    assert effective_requests(pod) == PodResources(cpu_millicores=2000, memory_bytes=1536 * MIB)


def test_largest_init_container_counts_when_it_exceeds_the_app() -> None:
    pod = {
        "initContainers": [
            container("fetch", requests={"cpu": "4"}),
            container("unpack", requests={"cpu": "2", "memory": "8Gi"}),
        ],
        "containers": [container("a", requests={"cpu": "1", "memory": "1Gi"})],
    }

    assert effective_requests(pod) == PodResources(cpu_millicores=4000, memory_bytes=8 * GIB)


def test_init_containers_do_not_add_to_the_app_containers() -> None:
    pod = {
        "initContainers": [container("fetch", requests={"cpu": "1"})],
        "containers": [
            container("a", requests={"cpu": "2"}),
            container("b", requests={"cpu": "2"}),
        ],
    }

    assert effective_requests(pod).cpu_millicores == 4000


def test_sidecar_adds_to_the_app_and_to_init_containers_started_after_it() -> None:
    pod = {
        "initContainers": [
            container("early", requests={"cpu": "4"}),
            container("proxy", requests={"cpu": "1"}, restart_policy="Always"),
            container("late", requests={"cpu": "4500m"}),
        ],
        "containers": [container("a", requests={"cpu": "2"})],
    }

    # app 2 + sidecar 1 = 3; "early" alone = 4; "late" with the sidecar = 5.5
    assert effective_requests(pod).cpu_millicores == 5500


def test_sidecar_does_not_add_to_init_containers_before_it() -> None:
    pod = {
        "initContainers": [
            container("early", requests={"cpu": "4"}),
            container("proxy", requests={"cpu": "1"}, restart_policy="Always"),
        ],
        "containers": [container("a", requests={"cpu": "2"})],
    }

    assert effective_requests(pod).cpu_millicores == 4000


def test_requests_default_to_limits_only_where_missing() -> None:
    pod = {
        "containers": [
            container("a", requests={"cpu": "1"}, limits={"cpu": "2", "memory": "1Gi"}),
        ]
    }

    assert effective_requests(pod) == PodResources(cpu_millicores=1000, memory_bytes=GIB)


def test_overhead_is_added() -> None:
    pod = {
        "containers": [container("a", requests={"cpu": "1", "memory": "1Gi"})],
        "overhead": {"cpu": "250m", "memory": "120Mi"},
    }

    assert effective_requests(pod) == PodResources(
        cpu_millicores=1250, memory_bytes=GIB + 120 * MIB
    )


def test_pod_level_resources_replace_the_container_sum_for_cpu_and_memory() -> None:
    pod = {
        "resources": {"limits": {"cpu": "4", "memory": "8Gi"}},
        "containers": [
            container("a", requests={"cpu": "1", "memory": "1Gi"}, limits={"nvidia.com/gpu": 1})
        ],
    }

    assert effective_requests(pod) == PodResources(
        cpu_millicores=4000, memory_bytes=8 * GIB, gpus=1
    )


def test_other_resources_are_kept_by_name() -> None:
    pod = {
        "containers": [
            container(
                "a", requests={"ephemeral-storage": "10Gi"}, limits={"vpc.amazonaws.com/efa": 4}
            )
        ]
    }

    assert effective_requests(pod).other == {
        "ephemeral-storage": Decimal(10 * GIB),
        "vpc.amazonaws.com/efa": Decimal(4),
    }


def test_cpu_rounds_up_to_whole_millicores_and_floats_mean_what_they_say() -> None:
    tiny = {"containers": [container("a", requests={"cpu": "0.0001"})]}
    float_cpu = {"containers": [container("a", requests={"cpu": 0.1})]}

    assert effective_requests(tiny).cpu_millicores == 1
    assert effective_requests(float_cpu).cpu_millicores == 100


@pytest.mark.parametrize("bad", ["lots", "-1", "NaN", "5Gb"])
def test_bad_quantity_names_the_container_and_the_value(bad: str) -> None:
    pod = {"containers": [container("trainer", requests={"memory": bad})]}

    with pytest.raises(InvalidResourceQuantity) as raised:
        effective_requests(pod)

    assert "'trainer'" in str(raised.value)
    assert "requests.memory" in str(raised.value)
    assert repr(bad) in str(raised.value)


# --- memory reserve and formatting ----------------------------------------------------


def test_memory_reserve_is_five_percent_between_256_mib_and_2_gib(catalog: Catalog) -> None:
    assert memory_reserve_bytes(type_named(catalog, "t3.medium")) == 256 * MIB
    assert memory_reserve_bytes(type_named(catalog, "c7i.4xlarge")) == int(32 * GIB * 0.05)
    assert memory_reserve_bytes(type_named(catalog, "p5.48xlarge")) == 2 * GIB
    assert usable_memory_bytes(type_named(catalog, "p5.48xlarge")) == 2046 * GIB


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (16 * GIB, "16Gi"),
        (3 * GIB // 2, "1.5Gi"),
        (512 * MIB, "512Mi"),
        (2048 * GIB, "2Ti"),
        (2046 * GIB, "2046Gi"),
        (100, "100"),
    ],
)
def test_memory_is_formatted_in_kubernetes_units(num_bytes: int, text: str) -> None:
    assert format_memory(num_bytes) == text


def test_cpu_is_formatted_in_vcpus() -> None:
    assert format_cpu(8000) == "8 vCPU"
    assert format_cpu(500) == "0.5 vCPU"
    assert format_cpu(192_000) == "192 vCPU"
