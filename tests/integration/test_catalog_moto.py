"""The catalog against moto's EC2 DescribeInstanceTypes, spoken over HTTP by real boto3."""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from orca.catalog import CachedCatalog, Catalog, InstanceType

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def ec2_client(endpoint: str) -> Any:
    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2),
    )


@pytest.fixture
def ec2(moto_endpoint: str) -> Any:
    return ec2_client(moto_endpoint)


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return Catalog.shipped()


def test_named_types_come_back_with_their_gpu_facts(ec2: Any) -> None:
    live = Catalog.from_ec2(ec2, names=["p5.48xlarge", "g6e.xlarge"])

    p5, g6e = live.get("p5.48xlarge"), live.get("g6e.xlarge")
    assert p5 is not None and g6e is not None
    assert (p5.gpus, p5.gpu_model, p5.gpu_memory_mib, p5.accelerator_kind) == (
        8,
        "H100",
        81920,
        "nvidia",
    )
    assert (p5.vcpus, p5.memory_mib) == (192, 2048 * 1024)
    assert p5.supports_spot and p5.supports_capacity_block
    assert (g6e.gpus, g6e.gpu_model, g6e.vcpus) == (1, "L40S", 4)
    assert p5.on_demand_usd_per_hour is None  # DescribeInstanceTypes has no prices


def test_unknown_names_are_left_out_rather_than_failing_the_call(ec2: Any) -> None:
    live = Catalog.from_ec2(ec2, names=["p6-b200.48xlarge", "p6.48xlarge"])

    assert live.names() == ["p6-b200.48xlarge"]
    b200 = live.get("p6-b200.48xlarge")
    assert b200 is not None and (b200.gpus, b200.gpu_model) == (8, "B200")


def test_whole_region_read_includes_neuron_and_graviton_types(ec2: Any) -> None:
    live = Catalog.from_ec2(ec2)

    assert len(live) > 500
    trn2, m7g = live.get("trn2.48xlarge"), live.get("m7g.large")
    assert trn2 is not None and (trn2.neuron_devices, trn2.accelerator_kind) == (16, "neuron")
    assert m7g is not None and m7g.architecture == "arm64"


def test_merge_fills_prices_and_the_types_the_live_answer_lacks(ec2: Any, shipped: Catalog) -> None:
    live = Catalog.from_ec2(ec2, names=["p5.48xlarge", "g6e.xlarge"])

    merged = Catalog.merged(live, shipped)

    p5, g5 = merged.get("p5.48xlarge"), merged.get("g5.xlarge")
    assert p5 is not None and p5.on_demand_usd_per_hour == Decimal("55.04")
    assert g5 is not None and (g5.gpus, g5.gpu_model) == (1, "A10G")
    assert g5 == shipped.get("g5.xlarge")
    assert set(merged.names()) == set(shipped.names())


def test_shipped_hardware_facts_agree_with_describe_instance_types(
    ec2: Any, shipped: Catalog
) -> None:
    live = Catalog.from_ec2(ec2, names=shipped.names())

    def hardware(t: InstanceType | None) -> tuple[object, ...]:
        assert t is not None
        return dataclasses.astuple(dataclasses.replace(t, on_demand_usd_per_hour=None))

    assert live.names() == shipped.names()
    disagreeing = [n for n in shipped.names() if hardware(live.get(n)) != hardware(shipped.get(n))]
    assert disagreeing == []


def test_cached_catalog_serves_live_facts_with_shipped_prices(ec2: Any, shipped: Catalog) -> None:
    cache = CachedCatalog(ec2, shipped=shipped)

    catalog = cache.get()

    assert cache.is_live
    g6e = catalog.get("g6e.xlarge")
    assert g6e is not None and g6e.on_demand_usd_per_hour == Decimal("1.861")
    assert catalog.get("p6-b300.48xlarge") is not None  # known only to EC2


def test_cached_catalog_falls_back_to_shipped_when_ec2_is_unreachable(
    shipped: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    # A port that was free a moment ago: nothing listens, the connection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = CachedCatalog(ec2_client(f"http://127.0.0.1:{port}"), shipped=shipped)

    with caplog.at_level(logging.WARNING, logger="orca.catalog"):
        catalog = cache.get()

    assert catalog is shipped and not cache.is_live
    assert "using the shipped instance table" in caplog.text
    assert f"127.0.0.1:{port}" in caplog.text
