"""Prices: Price List parsing, spot history, caching with TTLs, fallbacks and backoff.

The two AWS clients are the stateful fakes of :mod:`tests.fakes.pricing`; time is a
clock the tests move, so nothing sleeps.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from orca.aws.pricing_api import SpotQuote, on_demand_filters, on_demand_usd_per_hour
from orca.pricing import (
    Price,
    Prices,
    PriceUnknownError,
    average_rate,
    capacity_block_hourly,
    capacity_block_offering_price,
)
from tests.fakes.pricing import (
    FakePriceList,
    FakeSpotHistory,
    client_error,
    price_list_document,
)

REGION = "us-east-1"
START = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def price_list() -> FakePriceList:
    listed = FakePriceList()
    listed.set_price("p5.48xlarge", REGION, "98.32")
    listed.set_price("g6e.xlarge", REGION, "1.861")
    listed.set_price("c7i.4xlarge", REGION, "0.714")
    return listed


@pytest.fixture
def spot() -> FakeSpotHistory:
    return FakeSpotHistory()


@pytest.fixture
def prices(price_list: FakePriceList, spot: FakeSpotHistory, clock: Clock) -> Prices:
    return Prices(price_list, spot, REGION, clock=clock)


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --- reading Price List documents -------------------------------------------------------


def test_the_hourly_usd_rate_is_read_from_a_price_list_document() -> None:
    document = price_list_document("p5.48xlarge", REGION, "98.32")

    assert on_demand_usd_per_hour([document]) == Decimal("98.32")


def test_documents_without_a_positive_hourly_usd_rate_give_no_price() -> None:
    free = price_list_document("p5.48xlarge", REGION, "0")
    monthly = price_list_document("p5.48xlarge", REGION, "70000", unit="Mo")

    assert on_demand_usd_per_hour([free, monthly]) is None
    assert on_demand_usd_per_hour([]) is None


def test_products_of_another_market_option_are_not_on_demand_prices() -> None:
    block = json.loads(price_list_document("p5.48xlarge", REGION, "31.464"))
    block["product"]["attributes"]["marketoption"] = "CapacityBlock"
    ordinary = price_list_document("p5.48xlarge", REGION, "55.04")

    assert on_demand_usd_per_hour([json.dumps(block), ordinary]) == Decimal("55.04")


def test_several_rates_for_one_product_give_the_highest() -> None:
    documents = [
        price_list_document("p5.48xlarge", REGION, "55.04"),
        price_list_document("p5.48xlarge", REGION, "55.10", capacity_status="Other"),
    ]

    assert on_demand_usd_per_hour(documents) == Decimal("55.10")


def test_the_filters_name_the_linux_shared_tenancy_product_in_the_region() -> None:
    terms = {f["Field"]: f["Value"] for f in on_demand_filters("p5.48xlarge", "eu-west-1")}

    assert terms == {
        "instanceType": "p5.48xlarge",
        "regionCode": "eu-west-1",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }


# --- on-demand prices and their cache ---------------------------------------------------


def test_on_demand_price_comes_from_the_price_list_with_its_time(
    prices: Prices, clock: Clock
) -> None:
    price = prices.hourly("p5.48xlarge", "on-demand")

    assert (price.usd_per_hour, price.source, price.as_of) == (
        Decimal("98.32"),
        "price-list",
        START,
    )
    assert price.market == "on-demand" and price.zone is None


def test_on_demand_prices_are_asked_once_per_type_within_the_ttl(
    prices: Prices, price_list: FakePriceList, clock: Clock
) -> None:
    for _ in range(5):
        prices.hourly("p5.48xlarge", "on-demand")
        prices.hourly("g6e.xlarge", "on-demand", "us-east-1b")
        clock.advance(hours=1)

    assert sorted(price_list.asked_types()) == ["g6e.xlarge", "p5.48xlarge"]


def test_on_demand_price_is_read_again_after_the_ttl(
    prices: Prices, price_list: FakePriceList, clock: Clock
) -> None:
    assert prices.hourly("p5.48xlarge", "on-demand").usd_per_hour == Decimal("98.32")
    price_list.set_price("p5.48xlarge", REGION, "55.04")

    clock.advance(hours=5, minutes=59)
    assert prices.hourly("p5.48xlarge", "on-demand").usd_per_hour == Decimal("98.32")
    clock.advance(minutes=1)
    renewed = prices.hourly("p5.48xlarge", "on-demand")

    assert (renewed.usd_per_hour, renewed.as_of) == (Decimal("55.04"), clock.now)


def test_the_ttl_is_a_constructor_argument(
    price_list: FakePriceList, spot: FakeSpotHistory, clock: Clock
) -> None:
    prices = Prices(price_list, spot, REGION, clock=clock, on_demand_ttl=timedelta(minutes=10))
    prices.hourly("p5.48xlarge", "on-demand")
    clock.advance(minutes=10)
    prices.hourly("p5.48xlarge", "on-demand")

    assert price_list.asked_types() == ["p5.48xlarge", "p5.48xlarge"]


def test_threads_asking_for_one_type_at_once_make_one_call(
    prices: Prices, price_list: FakePriceList
) -> None:
    barrier = threading.Barrier(8)
    answers: list[Price] = []

    def ask() -> None:
        barrier.wait()
        answers.append(prices.hourly("p5.48xlarge", "on-demand"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(answers) == 8 and {a.usd_per_hour for a in answers} == {Decimal("98.32")}
    assert price_list.asked_types() == ["p5.48xlarge"]


# --- when the Price List API fails ------------------------------------------------------


def test_a_failing_price_list_gives_the_shipped_us_east_1_price_with_one_warning(
    prices: Prices, price_list: FakePriceList, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    price_list.fail(client_error("ServiceUnavailableException", "GetProducts"))

    with caplog.at_level(logging.WARNING, logger="orca.pricing"):
        for _ in range(3):
            p5 = prices.hourly("p5.48xlarge", "on-demand")
            g6e = prices.hourly("g6e.xlarge", "on-demand")

    # The shipped table's us-east-1 list prices, not the fake's.
    assert (p5.usd_per_hour, p5.source) == (Decimal("55.04"), "shipped-table")
    assert (g6e.usd_per_hour, g6e.source) == (Decimal("1.861"), "shipped-table")
    assert "us-east-1 list price shipped with ORCA" in p5.detail
    assert "ServiceUnavailableException" in p5.detail
    [warning] = warnings_from(caplog)
    assert "Price List API failed" in warning and "asking again in 300 s" in warning


def test_an_unreachable_price_list_endpoint_falls_back_too(
    prices: Prices, price_list: FakePriceList
) -> None:
    price_list.fail(EndpointConnectionError(endpoint_url="https://api.pricing.us-east-1"))

    price = prices.hourly("c7i.4xlarge", "on-demand")

    assert (price.usd_per_hour, price.source) == (Decimal("0.714"), "shipped-table")
    assert "EndpointConnectionError" in price.detail


def test_a_failing_price_list_is_asked_again_after_a_doubling_backoff(
    prices: Prices, price_list: FakePriceList, clock: Clock
) -> None:
    price_list.fail(client_error("ThrottlingException", "GetProducts"))
    asked_at: list[float] = []
    for minute in range(0, 40):
        clock.now = START + timedelta(minutes=minute)
        before = len(price_list.calls)
        prices.hourly("p5.48xlarge", "on-demand")
        prices.hourly("g6e.xlarge", "on-demand")
        if len(price_list.calls) > before:
            asked_at.append(minute)

    # 5, 10 and 20 minutes apart; one call each time, not one per type or per ask.
    assert asked_at == [0, 5, 15, 35]
    assert len(price_list.calls) == 4


def test_the_backoff_stops_at_its_most(
    price_list: FakePriceList, spot: FakeSpotHistory, clock: Clock
) -> None:
    prices = Prices(
        price_list,
        spot,
        REGION,
        clock=clock,
        retry=timedelta(minutes=30),
        max_retry=timedelta(hours=1),
    )
    price_list.fail(client_error("InternalErrorException", "GetProducts"))
    for _ in range(8 * 6):
        prices.hourly("p5.48xlarge", "on-demand")
        clock.advance(minutes=10)

    # At 0, 0:30, 1:30, 2:30 ... : never more than an hour apart after the first doubling.
    assert len(price_list.calls) == 1 + 1 + 7


def test_prices_come_from_the_price_list_again_once_it_answers(
    prices: Prices, price_list: FakePriceList, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    price_list.fail(client_error("ServiceUnavailableException", "GetProducts"), times=1)
    assert prices.hourly("p5.48xlarge", "on-demand").source == "shipped-table"

    clock.advance(minutes=5)
    with caplog.at_level(logging.INFO, logger="orca.pricing"):
        price = prices.hourly("p5.48xlarge", "on-demand")

    assert (price.usd_per_hour, price.source) == (Decimal("98.32"), "price-list")
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_the_last_listed_price_is_kept_while_the_price_list_fails(
    prices: Prices, price_list: FakePriceList, clock: Clock
) -> None:
    prices.hourly("p5.48xlarge", "on-demand")
    clock.advance(hours=7)
    price_list.fail(client_error("ServiceUnavailableException", "GetProducts"))

    price = prices.hourly("p5.48xlarge", "on-demand")

    assert (price.usd_per_hour, price.source, price.as_of) == (
        Decimal("98.32"),
        "price-list",
        START,
    )
    assert "read 2026-12-04T09:00:00Z" in price.detail


def test_a_type_the_price_list_lacks_is_priced_from_the_shipped_table_until_the_ttl(
    prices: Prices, price_list: FakePriceList, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="orca.pricing"):
        for _ in range(3):
            price = prices.hourly("t3.large", "on-demand")
            clock.advance(hours=1)

    assert (price.usd_per_hour, price.source) == (Decimal("0.0832"), "shipped-table")
    assert "has no product" in price.detail
    assert price_list.asked_types() == ["t3.large"]
    assert len(warnings_from(caplog)) == 1


def test_a_type_no_source_knows_has_no_price(prices: Prices, price_list: FakePriceList) -> None:
    with pytest.raises(PriceUnknownError, match=r"x9z\.metal"):
        prices.hourly("x9z.metal", "on-demand")
    with pytest.raises(PriceUnknownError):
        prices.hourly("x9z.metal", "on-demand")

    assert price_list.asked_types() == ["x9z.metal"]


def test_outside_us_east_1_the_shipped_price_says_the_region_differs(
    price_list: FakePriceList, spot: FakeSpotHistory, clock: Clock
) -> None:
    prices = Prices(price_list, spot, "eu-west-1", clock=clock)
    price_list.set_price("p5.48xlarge", "eu-west-1", "60.00")

    assert prices.hourly("p5.48xlarge", "on-demand").usd_per_hour == Decimal("60.00")
    shipped = prices.hourly("g6e.xlarge", "on-demand")
    assert shipped.source == "shipped-table"
    assert "prices in eu-west-1 differ" in shipped.detail


# --- spot prices ------------------------------------------------------------------------


def test_spot_price_is_the_newest_in_the_zone(prices: Prices, spot: FakeSpotHistory) -> None:
    spot.set_price("p5.48xlarge", "us-east-1a", "40.10", START - timedelta(days=2))
    spot.set_price("p5.48xlarge", "us-east-1a", "38.25", START - timedelta(hours=3))
    spot.set_price("p5.48xlarge", "us-east-1b", "44.00", START - timedelta(days=1))

    price = prices.hourly("p5.48xlarge", "spot", "us-east-1a")

    assert (price.usd_per_hour, price.source, price.zone) == (
        Decimal("38.25"),
        "spot-history",
        "us-east-1a",
    )
    assert price.usd_per_hour < prices.hourly("p5.48xlarge", "on-demand").usd_per_hour
    [call] = spot.calls
    assert call["StartTime"] == START and call["ProductDescriptions"] == ["Linux/UNIX"]


def test_spot_price_without_a_zone_is_the_highest_zone(
    prices: Prices, spot: FakeSpotHistory
) -> None:
    spot.set_price("p5.48xlarge", "us-east-1a", "38.25", START - timedelta(hours=3))
    spot.set_price("p5.48xlarge", "us-east-1b", "44.00", START - timedelta(days=1))

    price = prices.hourly("p5.48xlarge", "spot")

    assert (price.usd_per_hour, price.zone) == (Decimal("44.00"), "us-east-1b")


def test_spot_without_history_is_priced_at_the_on_demand_ceiling(
    prices: Prices, spot: FakeSpotHistory
) -> None:
    spot.set_price("p5.48xlarge", "us-east-1a", "38.25", START - timedelta(hours=3))

    price = prices.hourly("p5.48xlarge", "spot", "us-east-1c")

    assert (price.usd_per_hour, price.source, price.zone) == (
        Decimal("98.32"),
        "spot-ceiling",
        "us-east-1c",
    )
    assert "no spot price history for p5.48xlarge in us-east-1c" in price.detail


def test_spot_prices_are_read_again_after_an_hour(
    prices: Prices, spot: FakeSpotHistory, clock: Clock
) -> None:
    spot.set_price("g6e.xlarge", "us-east-1a", "0.61", START - timedelta(hours=3))
    assert prices.hourly("g6e.xlarge", "spot", "us-east-1a").usd_per_hour == Decimal("0.61")
    spot.set_price("g6e.xlarge", "us-east-1a", "0.72", START + timedelta(minutes=30))

    clock.advance(minutes=59)
    assert prices.hourly("g6e.xlarge", "spot", "us-east-1a").usd_per_hour == Decimal("0.61")
    clock.advance(minutes=1)
    assert prices.hourly("g6e.xlarge", "spot", "us-east-1a").usd_per_hour == Decimal("0.72")
    assert len(spot.calls) == 2


def test_types_due_for_spot_prices_are_asked_in_one_call(
    prices: Prices, spot: FakeSpotHistory, clock: Clock
) -> None:
    prices.warm(["p5.48xlarge", "g6e.xlarge", "c7i.4xlarge"])
    clock.advance(hours=1)
    for instance_type in ("p5.48xlarge", "g6e.xlarge", "c7i.4xlarge"):
        prices.hourly(instance_type, "spot", "us-east-1a")

    assert [sorted(call["InstanceTypes"]) for call in spot.calls] == [
        ["c7i.4xlarge", "g6e.xlarge", "p5.48xlarge"]
    ] * 2


def test_failing_spot_history_keeps_the_last_prices_or_the_ceiling(
    prices: Prices, spot: FakeSpotHistory, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    spot.set_price("p5.48xlarge", "us-east-1a", "38.25", START - timedelta(hours=3))
    prices.hourly("p5.48xlarge", "spot", "us-east-1a")
    clock.advance(hours=2)
    spot.fail(client_error("RequestLimitExceeded", "DescribeSpotPriceHistory"))

    with caplog.at_level(logging.WARNING, logger="orca.pricing"):
        kept = prices.hourly("p5.48xlarge", "spot", "us-east-1a")
        ceiling = prices.hourly("g6e.xlarge", "spot", "us-east-1a")
        prices.hourly("g6e.xlarge", "spot", "us-east-1b")

    assert (kept.usd_per_hour, kept.source, kept.as_of) == (
        Decimal("38.25"),
        "spot-history",
        START,
    )
    assert (ceiling.usd_per_hour, ceiling.source) == (Decimal("1.861"), "spot-ceiling")
    assert "RequestLimitExceeded" in ceiling.detail
    assert len(warnings_from(caplog)) == 1
    assert len(spot.calls) == 2


# --- reserved capacity ------------------------------------------------------------------


def test_an_instance_in_a_capacity_reservation_costs_the_on_demand_rate(prices: Prices) -> None:
    price = prices.capacity_reservation("p5.48xlarge")

    assert (price.usd_per_hour, price.market) == (Decimal("98.32"), "on-demand")
    assert "whether or not an instance uses it" in price.detail


def test_a_capacity_block_costs_its_upfront_fee_over_its_instance_hours() -> None:
    offering = {
        "CapacityBlockOfferingId": "cb-0123456789abcdef0",
        "InstanceType": "p5.48xlarge",
        "AvailabilityZone": "us-east-1a",
        "InstanceCount": 2,
        "StartDate": START,
        "EndDate": START + timedelta(days=1),
        "CapacityBlockDurationHours": 24,
        "UpfrontFee": "1510.08",
        "CurrencyCode": "USD",
        "Tenancy": "default",
    }

    price = capacity_block_offering_price(offering, as_of=START)

    assert price.usd_per_hour == Decimal("31.46")
    assert (price.market, price.source, price.zone) == (
        "capacity-block",
        "upfront-fee",
        "us-east-1a",
    )
    assert price.cost(24 * 3600) * 2 == Decimal("1510.08")


def test_a_capacity_block_in_minutes_is_priced_by_its_minutes() -> None:
    offering = {
        "InstanceType": "p5.48xlarge",
        "InstanceCount": 1,
        "CapacityBlockDurationHours": 1,
        "CapacityBlockDurationMinutes": 90,
        "UpfrontFee": "47.19",
        "CurrencyCode": "USD",
    }

    assert capacity_block_offering_price(offering, as_of=START).usd_per_hour == Decimal("31.46")


def test_a_recorded_capacity_block_fee_gives_the_same_rate() -> None:
    price = capacity_block_hourly("1000", 72, 3, instance_type="p5.48xlarge", as_of=START)

    assert price.usd_per_hour == Decimal("4.6296296296")


def test_a_capacity_block_without_hours_or_instances_is_refused() -> None:
    with pytest.raises(ValueError, match="hours > 0"):
        capacity_block_hourly("1000", 0, 1, instance_type="p5.48xlarge", as_of=START)


def test_capacity_blocks_have_no_hourly_market(prices: Prices) -> None:
    market: Any = "capacity-block"
    with pytest.raises(ValueError, match="capacity_block_hourly"):
        prices.hourly("p5.48xlarge", market)


def test_a_price_costs_its_rate_per_second() -> None:
    price = Price("g6e.xlarge", "on-demand", Decimal("1.861"), "price-list", START)

    assert price.cost(1800) == Decimal("0.9305")


def test_a_spot_runs_rate_weighs_each_price_by_the_seconds_it_was_in_effect() -> None:
    start = datetime(2026, 12, 4, 10, tzinfo=UTC)
    end = start + timedelta(hours=4)

    def quote(hours: float, price: str) -> SpotQuote:
        return SpotQuote(
            "p5.48xlarge", "us-east-1a", Decimal(price), start + timedelta(hours=hours)
        )

    changes = [quote(-5, "20"), quote(1, "24"), quote(3.5, "30"), quote(4, "99"), quote(6, "1")]

    # 1 h at $20 (in effect since before the start), 2.5 h at $24, 0.5 h at $30; the
    # change at the end and the one after it are not billed to this run.
    assert average_rate(changes, start, end, Decimal("18")) == Decimal("23.75")
    # No entry before the start: the rate noted at the launch holds until the first.
    assert average_rate(changes[1:], start, end, Decimal("18")) == Decimal("23.25")
    assert average_rate(changes, start, start, Decimal("18")) == Decimal("20")
