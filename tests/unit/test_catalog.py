"""The instance catalog: the shipped table, exact names, allow-list patterns, EC2 and caching."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from orca.catalog import (
    DEFAULT_TTL_SECONDS,
    CachedCatalog,
    Catalog,
    InstanceType,
    instance_type_from_ec2,
    matches_pattern,
)

# --- a stateful fake of the EC2 DescribeInstanceTypes edge ---------------------------


def ec2_entry(
    name: str,
    vcpus: int,
    memory_mib: int,
    *,
    gpus: list[dict[str, Any]] | None = None,
    neuron: list[dict[str, Any]] | None = None,
    inference: list[dict[str, Any]] | None = None,
    archs: tuple[str, ...] = ("x86_64",),
    usage: tuple[str, ...] = ("on-demand", "spot"),
) -> dict[str, Any]:
    """One DescribeInstanceTypes entry shaped as EC2 returns it."""
    entry: dict[str, Any] = {
        "InstanceType": name,
        "VCpuInfo": {"DefaultVCpus": vcpus},
        "MemoryInfo": {"SizeInMiB": memory_mib},
        "ProcessorInfo": {"SupportedArchitectures": list(archs)},
        "SupportedUsageClasses": list(usage),
    }
    if gpus is not None:
        entry["GpuInfo"] = {"Gpus": gpus}
    if neuron is not None:
        entry["NeuronInfo"] = {"NeuronDevices": neuron}
    if inference is not None:
        entry["InferenceAcceleratorInfo"] = {"Accelerators": inference}
    return entry


def h100s(count: int = 8) -> list[dict[str, Any]]:
    return [
        {
            "Count": count,
            "Name": "H100",
            "Manufacturer": "NVIDIA",
            "MemoryInfo": {"SizeInMiB": 81920},
        }
    ]


class FakePaginator:
    def __init__(self, ec2: FakeEC2) -> None:
        self._ec2 = ec2

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self._ec2.calls.append(kwargs)
        if self._ec2.error is not None:
            raise self._ec2.error
        entries = self._ec2.entries
        for f in kwargs.get("Filters", []):
            assert f["Name"] == "instance-type"
            entries = [e for e in entries if e["InstanceType"] in f["Values"]]
        # Two entries per page, so paging is exercised.
        for i in range(0, len(entries), 2):
            yield {"InstanceTypes": entries[i : i + 2]}


class FakeEC2:
    """Serves DescribeInstanceTypes from a list; ``error`` makes every call fail."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.error: Exception | None = None
        self.calls: list[dict[str, Any]] = []

    def get_paginator(self, operation: str) -> FakePaginator:
        assert operation == "describe_instance_types"
        return FakePaginator(self)


def throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}},
        "DescribeInstanceTypes",
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return Catalog.shipped()


# --- the shipped table ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "gpus", "model", "gpu_memory_mib"),
    [
        ("p6-b200.48xlarge", 8, "B200", 183359),
        ("p5.48xlarge", 8, "H100", 81920),
        ("p5e.48xlarge", 8, "H200", 144384),
        ("p5en.48xlarge", 8, "H200", 144384),
        ("p4d.24xlarge", 8, "A100", 40960),
        ("p4de.24xlarge", 8, "A100", 81920),
        ("g6e.xlarge", 1, "L40S", 45776),
        ("g6e.12xlarge", 4, "L40S", 45776),
        ("g6e.48xlarge", 8, "L40S", 45776),
        ("g6.xlarge", 1, "L4", 22888),
        ("g6.48xlarge", 8, "L4", 22888),
        ("g5.xlarge", 1, "A10G", 22888),
        ("g5.48xlarge", 8, "A10G", 22888),
    ],
)
def test_shipped_gpu_types_resolve_with_their_gpus(
    shipped: Catalog, name: str, gpus: int, model: str, gpu_memory_mib: int
) -> None:
    found = shipped.get(name)

    assert found is not None
    assert (found.gpus, found.gpu_model, found.gpu_memory_mib) == (gpus, model, gpu_memory_mib)
    assert found.accelerator_kind == "nvidia"
    assert found.nvidia_gpus == gpus


@pytest.mark.parametrize(
    ("name", "devices", "model"),
    [
        ("trn1.2xlarge", 1, "Trainium"),
        ("trn1.32xlarge", 16, "Trainium"),
        ("trn1n.32xlarge", 16, "Trainium"),
        ("trn2.48xlarge", 16, "Trainium2"),
        ("inf2.xlarge", 1, "Inferentia2"),
        ("inf2.48xlarge", 12, "Inferentia2"),
    ],
)
def test_shipped_neuron_types_resolve_with_their_devices(
    shipped: Catalog, name: str, devices: int, model: str
) -> None:
    found = shipped.get(name)

    assert found is not None
    assert (found.neuron_devices, found.neuron_model, found.accelerator_kind) == (
        devices,
        model,
        "neuron",
    )
    assert found.nvidia_gpus == 0


def test_p5_48xlarge_has_192_vcpus_and_2_tib(shipped: Catalog) -> None:
    p5 = shipped.get("p5.48xlarge")

    assert p5 is not None
    assert (p5.vcpus, p5.memory_mib, p5.architecture) == (192, 2048 * 1024, "x86_64")
    assert p5.supports_spot and p5.supports_capacity_block


def test_graviton_types_are_arm64(shipped: Catalog) -> None:
    graviton = [t for t in shipped if t.family in ("m7g", "c7g")]

    assert len(graviton) >= 6
    assert {t.architecture for t in graviton} == {"arm64"}


def test_every_shipped_type_has_a_price_and_plausible_hardware(shipped: Catalog) -> None:
    for t in shipped:
        assert t.on_demand_usd_per_hour is not None and t.on_demand_usd_per_hour > 0, t.name
        assert t.vcpus > 0 and t.memory_mib >= 1024, t.name
        assert (t.gpus > 0) == (t.gpu_model is not None), t.name


def test_shipped_table_says_where_its_prices_come_from() -> None:
    text = resources.files("orca").joinpath("data", "instance_types.json").read_text("utf-8")
    source = json.loads(text)["source"]

    assert "us-east-1" in source and "on-demand" in source and "Price List API" in source


def test_names_are_exact(shipped: Catalog) -> None:
    assert shipped.get("p6-b200.48xlarge") is not None
    assert shipped.get("p6.48xlarge") is None
    assert shipped.get("P5.48xlarge") is None
    assert "p5.48xlarge" in shipped and "p5" not in shipped


def test_unknown_name_suggests_the_variant_family_first(shipped: Catalog) -> None:
    assert shipped.close_matches("p6.48xlarge")[0] == "p6-b200.48xlarge"
    assert shipped.close_matches("P5.48xlarge")[0] == "p5.48xlarge"
    assert shipped.close_matches("g6e.xlarg")[0] == "g6e.xlarge"
    assert len(shipped.close_matches("p9.96xlarge", n=2)) <= 2


def test_family_is_the_part_before_the_size() -> None:
    assert InstanceType("p5.48xlarge", 192, 1, "x86_64").family == "p5"
    assert InstanceType("p6-b200.48xlarge", 192, 1, "x86_64").family == "p6-b200"


# --- allow-list patterns --------------------------------------------------------------


def test_exact_pattern_admits_only_that_name() -> None:
    assert matches_pattern("p5.48xlarge", ["p5.48xlarge"])
    assert not matches_pattern("p5e.48xlarge", ["p5.48xlarge"])


def test_family_wildcard_admits_the_family_and_no_other() -> None:
    assert matches_pattern("g6e.xlarge", ["g6e.*"])
    assert matches_pattern("g6e.48xlarge", [" g6e.* "])
    assert not matches_pattern("g6.xlarge", ["g6e.*"])


def test_shell_pattern_admits_every_family_it_spells() -> None:
    assert all(
        matches_pattern(n, ["p5*"]) for n in ("p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge")
    )
    assert not matches_pattern("p6-b200.48xlarge", ["p5*"])
    assert matches_pattern("g6.2xlarge", ["g6.?xlarge"])


def test_patterns_are_case_sensitive_and_an_empty_list_admits_nothing() -> None:
    assert not matches_pattern("p5.48xlarge", ["P5.*"])
    assert not matches_pattern("p5.48xlarge", [])


def test_pattern_helper_is_reachable_from_the_catalog_class() -> None:
    assert Catalog.matches_pattern("g6e.2xlarge", ["p5.48xlarge", "g6e.*"])
    assert not Catalog.matches_pattern("g6.2xlarge", ["p5.48xlarge", "g6e.*"])


def test_catalog_lists_the_types_an_allow_list_admits(shipped: Catalog) -> None:
    names = [t.name for t in shipped.matching(["g6e.*", "p5.48xlarge"])]

    assert names == sorted(names)
    assert "p5.48xlarge" in names and "g6e.xlarge" in names
    assert len(names) == 9


# --- reading EC2 ----------------------------------------------------------------------


def test_ec2_entry_converts_gpu_facts() -> None:
    t = instance_type_from_ec2(
        ec2_entry("p5.48xlarge", 192, 2097152, gpus=h100s(), usage=("capacity-block", "spot"))
    )

    assert t is not None
    assert (t.gpus, t.gpu_model, t.gpu_memory_mib, t.accelerator_kind) == (
        8,
        "H100",
        81920,
        "nvidia",
    )
    assert t.supports_spot and t.supports_capacity_block
    assert t.on_demand_usd_per_hour is None


def test_ec2_entry_counts_inferentia1_accelerators_as_neuron_devices() -> None:
    inf1 = [{"Count": 4, "Name": "Inferentia", "Manufacturer": "AWS"}]
    t = instance_type_from_ec2(ec2_entry("inf1.6xlarge", 24, 49152, inference=inf1))

    assert t is not None
    assert (t.neuron_devices, t.neuron_model, t.accelerator_kind) == (4, "Inferentia", "neuron")


def test_ec2_entry_prefers_neuron_info_over_inference_accelerators() -> None:
    devices = [{"Count": 12, "Name": "Inferentia2"}]
    accelerators = [{"Count": 12, "Name": "Inferentia2", "Manufacturer": "AWS"}]
    t = instance_type_from_ec2(
        ec2_entry("inf2.48xlarge", 192, 786432, neuron=devices, inference=accelerators)
    )

    assert t is not None and t.neuron_devices == 12


def test_amd_gpus_are_not_nvidia_gpus() -> None:
    radeon = [{"Count": 4, "Name": "Radeon Pro V520", "Manufacturer": "AMD"}]
    t = instance_type_from_ec2(ec2_entry("g4ad.16xlarge", 64, 262144, gpus=radeon))

    assert t is not None
    assert (t.gpus, t.nvidia_gpus, t.accelerator_kind) == (4, 0, None)


def test_mac_and_arm_types_get_the_right_architecture() -> None:
    assert instance_type_from_ec2(ec2_entry("mac2.metal", 12, 16384, archs=("arm64_mac",))) is None
    graviton = instance_type_from_ec2(ec2_entry("m7g.large", 2, 8192, archs=("arm64",)))
    assert graviton is not None and graviton.architecture == "arm64"


def test_from_ec2_reads_every_page() -> None:
    ec2 = FakeEC2([ec2_entry(f"m7i.{n}xlarge", 4 * n, 16384 * n) for n in (1, 2, 4, 8, 12)])

    catalog = Catalog.from_ec2(ec2)

    assert len(catalog) == 5
    assert ec2.calls == [{}]


def test_from_ec2_asks_only_for_the_named_types_by_filter() -> None:
    ec2 = FakeEC2([ec2_entry("p5.48xlarge", 192, 2097152, gpus=h100s())])

    catalog = Catalog.from_ec2(ec2, names=["p5.48xlarge", "p6.48xlarge"])

    assert catalog.names() == ["p5.48xlarge"]
    assert ec2.calls == [
        {"Filters": [{"Name": "instance-type", "Values": ["p5.48xlarge", "p6.48xlarge"]}]}
    ]


# --- merging live and shipped ---------------------------------------------------------


def test_merge_takes_live_hardware_shipped_prices_and_fills_missing_types(
    shipped: Catalog,
) -> None:
    # A live answer that disagrees with the table on memory, knows a type the table
    # lacks, and omits most shipped types.
    live = Catalog(
        [
            InstanceType(
                "p5.48xlarge",
                192,
                2000000,
                "x86_64",
                gpus=8,
                gpu_model="H100",
                accelerator_kind="nvidia",
            ),
            InstanceType("x8g.large", 2, 32768, "arm64"),
        ]
    )

    merged = Catalog.merged(live, shipped)

    p5 = merged.get("p5.48xlarge")
    assert p5 is not None and p5.memory_mib == 2000000
    assert p5.on_demand_usd_per_hour == Decimal("55.04")
    x8g = merged.get("x8g.large")
    assert x8g is not None and x8g.on_demand_usd_per_hour is None
    assert merged.get("g6e.xlarge") == shipped.get("g6e.xlarge")
    assert len(merged) == len(shipped) + 1


def test_merge_keeps_shipped_accelerators_when_the_live_entry_reports_none(
    shipped: Catalog,
) -> None:
    live = Catalog([InstanceType("g6e.xlarge", 4, 32768, "x86_64")])

    g6e = Catalog.merged(live, shipped).get("g6e.xlarge")

    assert g6e is not None
    assert (g6e.gpus, g6e.gpu_model, g6e.accelerator_kind) == (1, "L40S", "nvidia")


# --- the cache ------------------------------------------------------------------------


def live_entries() -> list[dict[str, Any]]:
    return [ec2_entry("p5.48xlarge", 192, 2097152, gpus=h100s())]


def test_cache_asks_ec2_once_per_ttl(shipped: Catalog) -> None:
    ec2, clock = FakeEC2(live_entries()), FakeClock()
    cache = CachedCatalog(ec2, clock=clock, shipped=shipped)

    first = cache.get()
    clock.now += DEFAULT_TTL_SECONDS - 1
    assert cache.get() is first
    assert len(ec2.calls) == 1

    clock.now += 1
    cache.get()
    assert len(ec2.calls) == 2
    assert cache.is_live


def test_cache_default_ttl_is_six_hours() -> None:
    assert DEFAULT_TTL_SECONDS == 6 * 3600


def test_cache_merges_live_facts_with_shipped_prices(shipped: Catalog) -> None:
    cache = CachedCatalog(FakeEC2(live_entries()), clock=FakeClock(), shipped=shipped)

    p5 = cache.get().get("p5.48xlarge")

    assert p5 is not None and p5.on_demand_usd_per_hour == Decimal("55.04")
    assert cache.get().get("g6.xlarge") is not None


@pytest.mark.parametrize(
    "error", [throttled(), EndpointConnectionError(endpoint_url="https://ec2.invalid")]
)
def test_cache_falls_back_to_shipped_table_on_botocore_error(
    shipped: Catalog, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    ec2 = FakeEC2(live_entries())
    ec2.error = error
    cache = CachedCatalog(ec2, clock=FakeClock(), shipped=shipped)

    with caplog.at_level(logging.WARNING, logger="orca.catalog"):
        catalog = cache.get()

    assert catalog is shipped
    assert not cache.is_live
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "shipped instance table" in record.getMessage()
    assert str(error) in record.getMessage()


def test_cache_retries_ec2_after_the_retry_interval_not_on_every_lookup(
    shipped: Catalog,
) -> None:
    ec2, clock = FakeEC2(live_entries()), FakeClock()
    ec2.error = throttled()
    cache = CachedCatalog(ec2, clock=clock, shipped=shipped, retry_seconds=300)

    cache.get()
    cache.get()
    assert len(ec2.calls) == 1

    ec2.error = None
    clock.now += 300
    assert cache.get() is not shipped
    assert cache.is_live


def test_cache_keeps_the_last_live_catalog_when_a_refresh_fails(
    shipped: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    ec2, clock = FakeEC2(live_entries()), FakeClock()
    cache = CachedCatalog(ec2, clock=clock, shipped=shipped)
    live = cache.get()

    ec2.error = throttled()
    clock.now += DEFAULT_TTL_SECONDS
    with caplog.at_level(logging.WARNING, logger="orca.catalog"):
        assert cache.get() is live

    assert cache.is_live
    assert "keeping the instance catalog read earlier" in caplog.text


def test_a_misspelt_size_of_a_known_family_is_not_taken_for_a_variant(shipped: Catalog) -> None:
    large = shipped.get("m7i.large")
    assert large is not None
    flex = dataclasses.replace(large, name="m7i-flex.12xlarge")
    catalog = Catalog([*shipped, flex])

    assert catalog.close_matches("m7i.xlarg")[0] == "m7i.xlarge"
    assert catalog.close_matches("p6.48xlarge")[0] == "p6-b200.48xlarge"
