"""Prices against the local AWS: the Price List API and spot price history over real boto3.

The local AWS answers GetProducts from the table shipped with ORCA (extension (i)),
fails it when told to (j) and serves the spot prices set through its control endpoint
(k). The runtime's clients are plain boto3 clients pointed at it; time is a clock the
tests move.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from orca.aws.pricing_api import on_demand_filters, on_demand_usd_per_hour, price_list_client
from orca.pricing import Prices
from orca_local.aws import LocalAwsControl, LocalAwsProcess
from tests.integration.aws_fixtures import REGION, local_clients, local_session

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def control(local_aws: LocalAwsProcess) -> Iterator[LocalAwsControl]:
    control = local_aws.control
    control.clear_pricing()
    yield control
    control.clear_pricing()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def prices(local_aws: LocalAwsProcess, control: LocalAwsControl, clock: Clock) -> Iterator[Prices]:
    pricing = price_list_client(local_session(), endpoint_url=local_aws.url, max_attempts=1)
    clients = local_clients(local_aws.url)
    yield Prices(pricing, clients.ec2, REGION, clock=clock)
    pricing.close()
    clients.close()


def test_on_demand_price_comes_from_the_price_list_api(
    prices: Prices, control: LocalAwsControl
) -> None:
    first = prices.hourly("p5.48xlarge", "on-demand")
    again = prices.hourly("p5.48xlarge", "on-demand", "us-east-1b")

    assert (first.usd_per_hour, first.source) == (Decimal("55.04"), "price-list")
    assert again == first
    assert control.price_list_requests() == [{"instanceType": "p5.48xlarge", "regionCode": REGION}]


def test_the_price_list_is_reached_through_aws_endpoint_url(
    local_aws: LocalAwsProcess, control: LocalAwsControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", local_aws.url)
    pricing = price_list_client(local_session(), max_attempts=1)

    pages = pricing.get_paginator("get_products").paginate(
        ServiceCode="AmazonEC2", Filters=on_demand_filters("g6e.xlarge", REGION)
    )
    documents = [d for page in pages for d in page["PriceList"]]
    pricing.close()

    # One product: the reservation siblings are filtered out by capacitystatus.
    assert len(documents) == 1
    assert on_demand_usd_per_hour(documents) == Decimal("1.861")


def test_spot_price_set_through_the_control_endpoint_is_below_on_demand(
    prices: Prices, control: LocalAwsControl, clock: Clock
) -> None:
    control.set_spot_price("p5.48xlarge", "us-east-1a", "25.00", clock.now - timedelta(days=1))
    control.set_spot_price("p5.48xlarge", "us-east-1a", "21.50", clock.now - timedelta(hours=2))
    control.set_spot_price("p5.48xlarge", "us-east-1b", "23.00", clock.now - timedelta(hours=5))

    on_demand = prices.hourly("p5.48xlarge", "on-demand")
    in_a = prices.hourly("p5.48xlarge", "spot", "us-east-1a")
    anywhere = prices.hourly("p5.48xlarge", "spot")

    assert (in_a.usd_per_hour, in_a.source) == (Decimal("21.50"), "spot-history")
    assert in_a.usd_per_hour < on_demand.usd_per_hour
    assert (anywhere.usd_per_hour, anywhere.zone) == (Decimal("23.00"), "us-east-1b")


def test_spot_without_history_costs_the_on_demand_price(prices: Prices) -> None:
    price = prices.hourly("g6e.xlarge", "spot", "us-east-1a")

    assert (price.usd_per_hour, price.source) == (Decimal("1.861"), "spot-ceiling")


def test_the_shipped_table_is_used_when_the_price_list_api_fails(
    prices: Prices, control: LocalAwsControl, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    control.set_on_demand_price("p5.48xlarge", "60.00", REGION)
    control.fail_price_list("ServiceUnavailableException")

    with caplog.at_level(logging.WARNING, logger="orca.pricing"):
        p5 = prices.hourly("p5.48xlarge", "on-demand")
        g6e = prices.hourly("g6e.xlarge", "on-demand")
        spot = prices.hourly("p5.48xlarge", "spot", "us-east-1a")

    assert (p5.usd_per_hour, p5.source) == (Decimal("55.04"), "shipped-table")
    assert "us-east-1 list price shipped with ORCA" in p5.detail
    assert (g6e.usd_per_hour, g6e.source) == (Decimal("1.861"), "shipped-table")
    assert (spot.usd_per_hour, spot.source) == (Decimal("55.04"), "spot-ceiling")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert len(control.price_list_requests()) == 1

    # Once the API answers again, the next attempt after the backoff reads it.
    control.clear_price_list_errors()
    clock.advance(minutes=4)
    assert prices.hourly("p5.48xlarge", "on-demand").source == "shipped-table"
    clock.advance(minutes=1)
    recovered = prices.hourly("p5.48xlarge", "on-demand")
    assert (recovered.usd_per_hour, recovered.source) == (Decimal("60.00"), "price-list")


def test_prices_are_read_again_after_their_ttl(
    prices: Prices, control: LocalAwsControl, clock: Clock
) -> None:
    control.set_on_demand_price("g6e.xlarge", "1.90", REGION)
    control.set_spot_price("g6e.xlarge", "us-east-1a", "0.61", clock.now - timedelta(hours=1))
    assert prices.hourly("g6e.xlarge", "on-demand").usd_per_hour == Decimal("1.90")
    assert prices.hourly("g6e.xlarge", "spot", "us-east-1a").usd_per_hour == Decimal("0.61")

    control.set_on_demand_price("g6e.xlarge", "1.95", REGION)
    control.set_spot_price("g6e.xlarge", "us-east-1a", "0.70", clock.now)
    clock.advance(minutes=59)
    assert prices.hourly("g6e.xlarge", "on-demand").usd_per_hour == Decimal("1.90")
    assert prices.hourly("g6e.xlarge", "spot", "us-east-1a").usd_per_hour == Decimal("0.61")

    clock.advance(minutes=1)
    assert prices.hourly("g6e.xlarge", "spot", "us-east-1a").usd_per_hour == Decimal("0.70")
    assert prices.hourly("g6e.xlarge", "on-demand").usd_per_hour == Decimal("1.90")
    clock.advance(hours=5)
    assert prices.hourly("g6e.xlarge", "on-demand").usd_per_hour == Decimal("1.95")
    assert len(control.price_list_requests()) == 2


def test_spot_history_reads_as_ec2_does(
    local_aws: LocalAwsProcess, control: LocalAwsControl
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    control.set_spot_price("c7i.4xlarge", "us-east-1a", "0.30", now - timedelta(days=2))
    control.set_spot_price("c7i.4xlarge", "us-east-1a", "0.28", now - timedelta(days=1))
    control.set_spot_price("c7i.4xlarge", "us-east-1b", "0.31", now - timedelta(hours=1))
    ec2 = local_clients(local_aws.url).ec2

    def history(**request: object) -> list[tuple[str, str]]:
        answer = ec2.describe_spot_price_history(InstanceTypes=["c7i.4xlarge"], **request)
        return [(e["AvailabilityZone"], e["SpotPrice"]) for e in answer["SpotPriceHistory"]]

    # From a start time: the price in effect then, and each change after it, newest first.
    assert history(StartTime=now - timedelta(hours=36)) == [
        ("us-east-1b", "0.310000"),
        ("us-east-1a", "0.280000"),
        ("us-east-1a", "0.300000"),
    ]
    assert sorted(history(StartTime=now, ProductDescriptions=["Linux/UNIX"])) == [
        ("us-east-1a", "0.280000"),
        ("us-east-1b", "0.310000"),
    ]
    assert history(StartTime=now, ProductDescriptions=["Windows"]) == []
    zone_b = [{"Name": "availability-zone", "Values": ["us-east-1b"]}]
    assert history(StartTime=now, Filters=zone_b) == [("us-east-1b", "0.310000")]


def test_a_spot_runs_rate_is_read_from_its_zones_history_over_the_run(
    prices: Prices, control: LocalAwsControl
) -> None:
    launched = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    control.set_spot_price("g6e.xlarge", "us-east-1a", "0.40", launched - timedelta(days=1))
    control.set_spot_price("g6e.xlarge", "us-east-1a", "0.70", launched + timedelta(hours=1))
    control.set_spot_price("g6e.xlarge", "us-east-1b", "5.00", launched + timedelta(hours=1))
    control.set_spot_price("g6e.xlarge", "us-east-1a", "9.00", launched + timedelta(hours=2))

    rate = prices.spot_rate_over(
        "g6e.xlarge", "us-east-1a", launched, launched + timedelta(hours=2), Decimal("0.40")
    )

    # An hour at $0.40, an hour at $0.70: the other zone and the change at the end are not it.
    assert rate == Decimal("0.55")
