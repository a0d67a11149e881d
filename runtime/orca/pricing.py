"""What an instance costs per hour: on-demand, spot, reserved capacity and capacity blocks.

Admission asks :meth:`Prices.hourly` before a launch (price x lifetime bound must fit
the budget) and the ledger settles with the same prices, so every answer is a
:class:`Price` that says where it came from and when it was read.

Sources, best first (the raw calls are in :mod:`orca.aws.pricing_api`):

- **On-demand** from the AWS Price List API, for the runtime's region. List prices
  change a few times a year, so a price is kept for hours (6 h by default). Only the
  types pods actually name are asked for, one call per type, each cached on its own.
- **Spot** from DescribeSpotPriceHistory, the current price per zone. Spot prices move
  slowly (AWS smooths them), so an hour's cache is enough; the types due for a refresh
  are asked for together in one call.
- **Fallbacks.** When the Price List API fails (an error, no endpoint, no product for
  the type), the last price it gave is kept; without one, the table shipped with ORCA
  (:meth:`orca.catalog.Catalog.shipped`) gives the type's us-east-1 list price, and the
  :class:`Price` says so. One WARNING marks the start of an outage (not one per pod),
  and the API is asked again after a delay that doubles up to an hour. A type without
  spot history is priced at its on-demand price: what a spot request bids by default
  and the most it can cost.

How AWS bills reserved capacity: an instance in an On-Demand Capacity Reservation is
billed at the on-demand rate (the reservation is billed at that rate whether or not an
instance uses it), hence :meth:`Prices.capacity_reservation`. A capacity block is paid
upfront when bought; its effective hourly rate per instance is the fee divided by the
duration and the instance count (:func:`capacity_block_hourly`).

Times are wall-clock UTC from an injected ``clock``, so tests move time without sleeping.
A :class:`Prices` is shared by the runtime's worker threads; each cache has its own lock,
held across the AWS call so that threads asking for one type make one call.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from orca.aws import pricing_api
from orca.aws.errors import AwsError
from orca.aws.pricing_api import Client, SpotQuote
from orca.catalog import Catalog

logger = logging.getLogger(__name__)

Market = Literal["on-demand", "spot"]
PriceSource = Literal[
    "price-list", "shipped-table", "spot-history", "spot-ceiling", "upfront-fee", "prepaid"
]

DEFAULT_ON_DEMAND_TTL = timedelta(hours=6)
DEFAULT_SPOT_TTL = timedelta(hours=1)
DEFAULT_RETRY = timedelta(minutes=5)
DEFAULT_MAX_RETRY = timedelta(hours=1)
# The shipped table holds us-east-1 list prices (see its "source" field).
SHIPPED_TABLE_REGION = "us-east-1"
# The Price List quotes rates to 10 decimal places; derived rates keep as many.
_RATE_QUANTUM = Decimal("1E-10")
_LONG_AGO = datetime.min.replace(tzinfo=UTC)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Price:
    """An hourly rate for one instance, where it came from and when it was read.

    ``source`` is ``price-list`` or ``spot-history`` (read from AWS), ``shipped-table``
    (ORCA's us-east-1 list price, the Price List API having failed), ``spot-ceiling``
    (no spot history: the on-demand price) or ``upfront-fee`` (a capacity block's fee
    spread over its hours). ``detail`` says the same for a person, e.g. in an Event.
    """

    instance_type: str
    market: Market | Literal["capacity-block"]
    usd_per_hour: Decimal
    source: PriceSource
    as_of: datetime
    zone: str | None = None
    detail: str = ""

    def cost(self, seconds: float | Decimal) -> Decimal:
        """USD for ``seconds`` at this rate (EC2 bills Linux instances per second)."""
        return self.usd_per_hour * Decimal(str(seconds)) / 3600


class PriceUnknownError(LookupError):
    """No source has a price for the type: AWS failed and the shipped table lacks it."""


@dataclass
class _Backoff:
    """When to ask a failing API again: after ``first``, doubling up to ``most``."""

    first: timedelta
    most: timedelta
    delay: timedelta | None = None  # None: the API answers
    next_attempt: datetime = _LONG_AGO
    reason: str = ""

    def ready(self, now: datetime) -> bool:
        return now >= self.next_attempt

    @property
    def seconds(self) -> float:
        return self.delay.total_seconds() if self.delay is not None else 0.0

    def failed(self, now: datetime, reason: str) -> bool:
        """Record a failure; True when it starts an outage."""
        starts = self.delay is None
        self.delay = self.first if self.delay is None else min(self.delay * 2, self.most)
        self.next_attempt = now + self.delay
        self.reason = reason
        return starts

    def succeeded(self) -> bool:
        """Record an answer; True when it ends an outage."""
        ended = self.delay is not None
        self.delay, self.reason = None, ""
        return ended


@dataclass
class _OnDemandEntry:
    price: Price | None  # what is answered until ``expires``; None: no source has one
    expires: datetime
    listed: Price | None = None  # the last price the Price List API gave
    missing: str = ""  # why no source has a price

    def answer(self) -> Price:
        if self.price is None:
            raise PriceUnknownError(self.missing)
        return self.price


@dataclass
class _SpotEntry:
    quotes: dict[str, SpotQuote]  # by zone
    read_at: datetime
    expires: datetime
    failure: str = ""  # why the quotes are old or missing


class Prices:
    """Hourly prices for the runtime's region, cached, refreshed and with fallbacks.

    ``pricing`` is a Price List client (:func:`orca.aws.pricing_api.price_list_client`:
    us-east-1, whatever the runtime's region), ``ec2`` the runtime's EC2 client.
    """

    def __init__(
        self,
        pricing: Client,
        ec2: Client,
        region: str,
        *,
        on_demand_ttl: timedelta = DEFAULT_ON_DEMAND_TTL,
        spot_ttl: timedelta = DEFAULT_SPOT_TTL,
        retry: timedelta = DEFAULT_RETRY,
        max_retry: timedelta = DEFAULT_MAX_RETRY,
        clock: Callable[[], datetime] = _utc_now,
        shipped: Catalog | None = None,
    ) -> None:
        self.region = region
        self._pricing = pricing
        self._ec2 = ec2
        self._on_demand_ttl = on_demand_ttl
        self._spot_ttl = spot_ttl
        self._clock = clock
        self._shipped = shipped if shipped is not None else Catalog.shipped()

        self._on_demand_lock = threading.Lock()
        self._on_demand: dict[str, _OnDemandEntry] = {}
        self._price_list = _Backoff(retry, max_retry)
        self._spot_lock = threading.Lock()
        self._spot: dict[str, _SpotEntry] = {}
        self._spot_history = _Backoff(retry, max_retry)

    def hourly(self, instance_type: str, market: Market, zone: str | None = None) -> Price:
        """The hourly price of one instance of ``instance_type`` bought on ``market``.

        On-demand prices are regional and ignore ``zone``. A spot price is the zone's;
        with no zone (EC2 picks one), the highest of the zones, which bounds the cost.
        Raises :class:`PriceUnknownError` when no source has a price.
        """
        if market == "on-demand":
            return self.on_demand(instance_type)
        if market == "spot":
            return self.spot(instance_type, zone)
        raise ValueError(
            f"no hourly market {market!r}: price capacity blocks with capacity_block_hourly"
        )

    def warm(self, instance_types: Iterable[str]) -> None:
        """Read the prices of types about to be used: one spot call for all of them."""
        wanted = sorted(set(instance_types))
        for instance_type in wanted:
            self.on_demand(instance_type)
        with self._spot_lock:
            self._refresh_spot(wanted, self._clock())

    def capacity_reservation(self, instance_type: str) -> Price:
        """The hourly price of an instance in an On-Demand Capacity Reservation."""
        price = self.on_demand(instance_type)
        note = (
            "billed at the on-demand rate in a capacity reservation, which is billed "
            "whether or not an instance uses it"
        )
        return dataclasses.replace(price, detail=f"{price.detail}; {note}")

    def on_demand(self, instance_type: str) -> Price:
        """The on-demand price, from the Price List API or a fallback."""
        with self._on_demand_lock:
            now = self._clock()
            entry = self._on_demand.get(instance_type)
            if entry is None or now >= entry.expires:
                entry = self._refresh_on_demand(instance_type, entry, now)
                self._on_demand[instance_type] = entry
            return entry.answer()

    def _refresh_on_demand(
        self, instance_type: str, entry: _OnDemandEntry | None, now: datetime
    ) -> _OnDemandEntry:
        # During an outage the API is asked only when the backoff allows.
        if not self._price_list.ready(now):
            return self._on_demand_fallback(instance_type, entry, now)
        try:
            documents = pricing_api.get_on_demand_products(
                self._pricing, instance_type, self.region
            )
        except AwsError as e:
            self._price_list_failed(now, e)
            return self._on_demand_fallback(instance_type, entry, now)

        if self._price_list.succeeded():
            logger.info("The Price List API answers again; on-demand prices come from it")
        rate = pricing_api.on_demand_usd_per_hour(documents)
        if rate is None:
            # The API works but does not sell this type here; asking again soon will not help.
            logger.warning(
                "The Price List API has no Linux on-demand price for %s in %s; using the "
                "shipped table and asking again in %.0f h",
                instance_type,
                self.region,
                self._on_demand_ttl.total_seconds() / 3600,
            )
            reason = "the Price List API has no product for it"
            return self._shipped_entry(instance_type, now, reason, now + self._on_demand_ttl)

        price = Price(
            instance_type,
            "on-demand",
            rate,
            "price-list",
            now,
            detail=f"the Price List API's on-demand price in {self.region}",
        )
        return _OnDemandEntry(price, now + self._on_demand_ttl, listed=price)

    def _price_list_failed(self, now: datetime, error: AwsError) -> None:
        if self._price_list.failed(now, _reason(error)):
            logger.warning(
                "The Price List API failed (%s); on-demand prices come from the last read or "
                "the us-east-1 list prices shipped with ORCA until it answers; asking again "
                "in %.0f s",
                error,
                self._price_list.seconds,
            )
        else:
            logger.debug(
                "The Price List API still fails (%s); asking again in %.0f s",
                error,
                self._price_list.seconds,
            )

    def _on_demand_fallback(
        self, instance_type: str, entry: _OnDemandEntry | None, now: datetime
    ) -> _OnDemandEntry:
        reason = f"the Price List API failed: {self._price_list.reason}"
        until = self._price_list.next_attempt
        if entry is not None and entry.listed is not None:
            # An old list price is better than a table of another region and year.
            listed = entry.listed
            kept = dataclasses.replace(
                listed, detail=f"{listed.detail}, read {listed.as_of:%FT%TZ} ({reason})"
            )
            return _OnDemandEntry(kept, until, listed=listed)
        return self._shipped_entry(instance_type, now, reason, until)

    def _shipped_entry(
        self, instance_type: str, now: datetime, reason: str, until: datetime
    ) -> _OnDemandEntry:
        known = self._shipped.get(instance_type)
        if known is None or known.on_demand_usd_per_hour is None:
            missing = (
                f"no on-demand price for {instance_type} in {self.region}: {reason}, and the "
                "table shipped with ORCA does not list the type"
            )
            return _OnDemandEntry(None, until, missing=missing)
        detail = f"the {SHIPPED_TABLE_REGION} list price shipped with ORCA ({reason})"
        if self.region != SHIPPED_TABLE_REGION:
            detail += f"; prices in {self.region} differ"
        price = Price(
            instance_type,
            "on-demand",
            known.on_demand_usd_per_hour,
            "shipped-table",
            now,
            detail=detail,
        )
        return _OnDemandEntry(price, until)

    def spot(self, instance_type: str, zone: str | None = None) -> Price:
        """The current spot price in ``zone`` (None: the highest zone), or the ceiling."""
        with self._spot_lock:
            now = self._clock()
            entry = self._spot.get(instance_type)
            if entry is None or now >= entry.expires:
                self._refresh_spot([instance_type], now)
                entry = self._spot[instance_type]

        quote = _pick_quote(entry.quotes, zone)
        if quote is not None:
            where = zone or f"{quote.zone} (the highest of {', '.join(sorted(entry.quotes))})"
            return Price(
                instance_type,
                "spot",
                quote.usd_per_hour,
                "spot-history",
                entry.read_at,
                zone=quote.zone,
                detail=f"the spot price in {where} since {quote.timestamp:%FT%TZ}"
                + (f" ({entry.failure})" if entry.failure else ""),
            )

        # No history: a spot request bids the on-demand price by default, and pays at most it.
        ceiling = self.on_demand(instance_type)
        why = entry.failure or f"no spot price history for {instance_type} in {zone or 'any zone'}"
        return Price(
            instance_type,
            "spot",
            ceiling.usd_per_hour,
            "spot-ceiling",
            ceiling.as_of,
            zone=zone,
            detail=f"the on-demand price as the spot ceiling ({why}); on-demand: {ceiling.detail}",
        )

    def spot_rate_over(
        self, instance_type: str, zone: str, start: datetime, end: datetime, at_start: Decimal
    ) -> Decimal | None:
        """What a spot instance in ``zone`` averaged an hour over ``[start, end]``, as EC2
        bills it (the price in effect each second); None when the history cannot be read.

        ``at_start`` is the rate known for the start (noted at the launch), used until the
        history's first entry when the history begins later.
        """
        try:
            changes = pricing_api.spot_price_changes(self._ec2, instance_type, zone, start, end)
        except AwsError as e:
            logger.warning(
                "the spot price history of %s in %s from %s to %s could not be read (%s); "
                "the run is settled at the price noted at its launch",
                instance_type,
                zone,
                f"{start:%FT%TZ}",
                f"{end:%FT%TZ}",
                e,
            )
            return None
        return average_rate(changes, start, end, at_start)

    def _refresh_spot(self, asked: Iterable[str], now: datetime) -> None:
        # Batch: every type whose prices are due goes in the same call.
        due = {t for t, e in self._spot.items() if now >= e.expires}
        due |= {t for t in asked if t not in self._spot or now >= self._spot[t].expires}
        if not due:
            return
        if not self._spot_history.ready(now):
            self._spot_fallback(due, now)
            return
        try:
            quotes = pricing_api.current_spot_prices(self._ec2, due, now)
        except AwsError as e:
            if self._spot_history.failed(now, _reason(e)):
                logger.warning(
                    "DescribeSpotPriceHistory failed (%s); spot prices come from the last read "
                    "or the on-demand ceiling until it answers; asking again in %.0f s",
                    e,
                    self._spot_history.seconds,
                )
            self._spot_fallback(due, now)
            return

        if self._spot_history.succeeded():
            logger.info("DescribeSpotPriceHistory answers again; spot prices come from it")
        for instance_type in due:
            by_zone = {z: q for (t, z), q in quotes.items() if t == instance_type}
            self._spot[instance_type] = _SpotEntry(by_zone, now, now + self._spot_ttl)

    def _spot_fallback(self, due: Iterable[str], now: datetime) -> None:
        failure = f"DescribeSpotPriceHistory failed: {self._spot_history.reason}"
        for instance_type in due:
            old = self._spot.get(instance_type)
            quotes, read_at = (old.quotes, old.read_at) if old else ({}, now)
            self._spot[instance_type] = _SpotEntry(
                quotes, read_at, self._spot_history.next_attempt, failure
            )


def average_rate(
    changes: Iterable[SpotQuote], start: datetime, end: datetime, at_start: Decimal
) -> Decimal:
    """The time-weighted hourly rate over ``[start, end]`` of a price that changes at each
    entry of ``changes`` (oldest first), and is ``at_start`` before the first of them."""
    rate, moment = at_start, start
    total = Decimal(0)
    for change in changes:
        if change.timestamp <= start:
            rate = change.usd_per_hour  # in effect when the run began
            continue
        if change.timestamp >= end:
            break
        total += rate * Decimal(str((change.timestamp - moment).total_seconds()))
        rate, moment = change.usd_per_hour, change.timestamp
    span = Decimal(str((end - start).total_seconds()))
    if span <= 0:
        return rate
    total += rate * Decimal(str((end - moment).total_seconds()))
    return (total / span).quantize(_RATE_QUANTUM)


def _reason(error: AwsError) -> str:
    return f"{error.code}: {error.aws_message}"


def _pick_quote(quotes: Mapping[str, SpotQuote], zone: str | None) -> SpotQuote | None:
    if zone is not None:
        return quotes.get(zone)
    return max(quotes.values(), key=lambda q: q.usd_per_hour, default=None)


def capacity_block_price(instance_type: str, as_of: datetime) -> Price:
    """What one more hour of an instance in a capacity block costs: nothing.

    AWS bills a capacity block's whole fee when it is bought, used or not, and bills its
    instances nothing by the hour (Linux); the fee is the department's spend from the
    purchase, which :func:`capacity_block_hourly` spreads over the block's hours.
    """
    return Price(
        instance_type,
        "capacity-block",
        Decimal(0),
        "prepaid",
        as_of,
        detail="a capacity block's instances cost nothing by the hour: its whole fee was "
        "billed when it was bought",
    )


def capacity_block_hourly(
    upfront_fee: Decimal | str,
    duration_hours: Decimal | int,
    instance_count: int,
    *,
    instance_type: str,
    as_of: datetime,
    zone: str | None = None,
) -> Price:
    """The effective hourly price of one instance in a capacity block.

    AWS charges the block's whole fee upfront, used or not, so each instance-hour
    costs fee / (hours x instances). Works from an offering's fee or from the fee
    recorded when the block was bought.
    """
    fee, hours = Decimal(str(upfront_fee)), Decimal(str(duration_hours))
    if hours <= 0 or instance_count <= 0 or fee < 0:
        raise ValueError(
            f"a capacity block needs a fee >= 0, hours > 0 and instances > 0, not {fee}, "
            f"{hours} and {instance_count}"
        )
    rate = (fee / (hours * instance_count)).quantize(_RATE_QUANTUM)
    return Price(
        instance_type,
        "capacity-block",
        rate,
        "upfront-fee",
        as_of,
        zone=zone,
        detail=f"a capacity block's upfront fee {fee} USD over {hours} h x {instance_count}",
    )


def capacity_block_offering_price(offering: Mapping[str, Any], *, as_of: datetime) -> Price:
    """:func:`capacity_block_hourly` for one DescribeCapacityBlockOfferings entry.

    Offerings state their length in hours and may also state it in minutes, the finer
    figure, which is used when present.
    """
    if offering.get("CurrencyCode", "USD") != "USD":
        raise ValueError(f"capacity block fee in {offering['CurrencyCode']}, not USD")
    minutes = offering.get("CapacityBlockDurationMinutes")
    hours = Decimal(minutes) / 60 if minutes else Decimal(offering["CapacityBlockDurationHours"])
    return capacity_block_hourly(
        offering["UpfrontFee"],
        hours,
        int(offering["InstanceCount"]),
        instance_type=offering["InstanceType"],
        as_of=as_of,
        zone=offering.get("AvailabilityZone"),
    )
