"""What the cost ledger records, and the arithmetic of money and months it uses.

:mod:`orca.ledger` keeps these records in DynamoDB; this module holds the value types
it returns (:class:`PodRecord`, :class:`PodEntry`, :class:`MonthSummary`), the
refusal (:class:`BudgetExceeded`) and the rules for amounts and times, so that the
ledger, the admission and the cost report all count alike.

Amounts are :class:`~decimal.Decimal` USD, stored as DynamoDB numbers, kept to
1e-6 USD (:data:`USD_QUANTUM`): a p5.48xlarge second costs about 0.027 USD, so a
micro-dollar keeps per-second accrual exact to well under a cent a month. An estimate
is rounded up (a hold never holds less than the bound costs); a cost is rounded half
up, per month part, and a pod's cost is the sum of its parts. Messages show cents.

Times are aware datetimes in UTC, stored as ISO 8601 strings ending in ``Z``. Months
are UTC calendar months, ``YYYY-MM``, as AWS Budgets' monthly period is.

AWS bills EC2 Linux instances (on-demand and spot) per second from the launch to the
stop, with a minimum of 60 seconds: :func:`billed_parts` splits a run at each UTC
month boundary (each month gets the seconds that fell in it, as AWS's bill does) and
adds what the minimum adds to the month the instance launched in.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any, Literal

USD_QUANTUM = Decimal("0.000001")
CENT = Decimal("0.01")
MINIMUM_BILLED_SECONDS = 60
_SECONDS_PER_HOUR = Decimal(3600)


class HoldState(enum.StrEnum):
    HELD = "held"  # the estimate holds budget; the instance may be running
    SETTLED = "settled"  # the real cost replaced the estimate
    RELEASED = "released"  # the launch never happened; the estimate was given back


# --- amounts ---


def usd(amount: Decimal | int | str) -> Decimal:
    """``amount`` to the ledger's precision (half up)."""
    return Decimal(amount).quantize(USD_QUANTUM, rounding=ROUND_HALF_UP)


def cents(amount: Decimal) -> str:
    """``$1,234.57``: an amount for a person."""
    return f"${amount.quantize(CENT, rounding=ROUND_HALF_UP):,}"


def cost_words(amount: Decimal) -> str:
    """``$0.90``; under a cent, four places (``$0.0017``), so a short run never reads free."""
    if Decimal(0) < amount < CENT:
        return f"${amount.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"
    return cents(amount)


def estimate_usd(usd_per_hour: Decimal, bound_seconds: int) -> Decimal:
    """What a pod may cost at most: its hourly price for its lifetime bound, rounded up."""
    raw = usd_per_hour * Decimal(bound_seconds) / _SECONDS_PER_HOUR
    return raw.quantize(USD_QUANTUM, rounding=ROUND_CEILING)


def cost_usd(usd_per_hour: Decimal, seconds: Decimal) -> Decimal:
    return usd(usd_per_hour * seconds / _SECONDS_PER_HOUR)


# --- times and months ---


def iso(moment: datetime) -> str:
    """``2026-12-04T19:27:36Z`` (microseconds only when there are some)."""
    return aware(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return aware(datetime.fromisoformat(text)).astimezone(UTC)


def aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; the ledger counts in UTC")
    return moment


def month_of(moment: datetime) -> str:
    return aware(moment).astimezone(UTC).strftime("%Y-%m")


def month_start(month: str) -> datetime:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError as e:
        raise ValueError(f"month {month!r} is not YYYY-MM") from e
    return start


def next_month(month: str) -> str:
    start = month_start(month)
    return f"{start.year + 1}-01" if start.month == 12 else f"{start.year}-{start.month + 1:02d}"


# A hold stays in the month it was made in until it is settled or given back. A pod's
# bound is at most the settings' lifetime ceiling (28 days) plus the runtime's grace past
# a deadline, which can reach from a month's last minutes into the month after next: open
# holds are looked for this many months back.
OPEN_HOLD_MONTHS = 2


def months_before(month: str, count: int) -> list[str]:
    """The ``count`` months before ``month``, the nearest first."""
    months, moment = [], month_start(month)
    for _ in range(count):
        moment = month_start(month_of(moment - timedelta(seconds=1)))
        months.append(month_of(moment))
    return months


def months_between(start: datetime, end: datetime) -> list[str]:
    """The months that [start, end) touches, in order."""
    months, month = [], month_of(start)
    while month_start(month) < aware(end):
        months.append(month)
        month = next_month(month)
    return months


def seconds(span: timedelta) -> Decimal:
    return Decimal(span.days * 86400 + span.seconds) + Decimal(span.microseconds).scaleb(-6)


def billed_parts(launched_at: datetime, ended_at: datetime) -> list[tuple[str, Decimal]]:
    """The billed seconds of a run per UTC month, the 60 s minimum in the first month."""
    if aware(ended_at) < aware(launched_at):
        raise ValueError(
            f"the instance ended ({iso(ended_at)}) before it launched ({iso(launched_at)})"
        )
    parts: list[tuple[str, Decimal]] = []
    moment = launched_at
    while moment < ended_at:
        month = month_of(moment)
        until = min(month_start(next_month(month)), ended_at)
        parts.append((month, seconds(until - moment)))
        moment = until
    if not parts:
        parts.append((month_of(launched_at), Decimal(0)))
    short = MINIMUM_BILLED_SECONDS - sum(s for _, s in parts)
    if short > 0:
        parts[0] = (parts[0][0], parts[0][1] + short)
    return parts


def duration(bound_seconds: int) -> str:
    """``6h``, ``1h30m``, ``45s``: a lifetime bound for a person."""
    hours, rest = divmod(bound_seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return text or "0s"


# --- records ---


def _optional_amount(item: Mapping[str, Any], name: str) -> Decimal | None:
    value = item.get(name)
    return None if value is None else Decimal(value)


def _optional_time(item: Mapping[str, Any], name: str) -> datetime | None:
    value = item.get(name)
    return None if value is None else parse_time(str(value))


@dataclass(frozen=True)
class PodRecord:
    """A pod's ledger record: its hold and, once settled, what it really cost.

    ``generation`` counts the holds the pod has opened (a released hold may be opened
    again when the pod is retried); ``spent_by_month`` is the settled cost per month.
    """

    pod_uid: str
    namespace: str
    name: str
    instance_type: str
    market: str
    usd_per_hour: Decimal
    bound_seconds: int
    estimate_usd: Decimal
    hold_month: str
    state: HoldState
    generation: int
    held_at: datetime
    instance_id: str | None = None
    launched_at: datetime | None = None
    ended_at: datetime | None = None
    cost_usd: Decimal | None = None
    settled_usd_per_hour: Decimal | None = None
    # The rate the instance is billed at, once launched: the held price, or a spot zone's.
    billed_usd_per_hour: Decimal | None = None
    spent_by_month: Mapping[str, Decimal] = field(default_factory=dict)
    closed_at: datetime | None = None

    @property
    def pod(self) -> str:
        return f"{self.namespace}/{self.name}"

    def accrued_usd(self, now: datetime) -> Decimal:
        """What the pod has cost by ``now``: its settled cost, or per second since launch."""
        if self.state is HoldState.SETTLED:
            return self.cost_usd or Decimal(0)
        if self.state is HoldState.RELEASED or self.launched_at is None:
            return Decimal(0)
        ran = max(seconds(aware(now) - self.launched_at), Decimal(MINIMUM_BILLED_SECONDS))
        return cost_usd(self.usd_per_hour, ran)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> PodRecord:
        settled_price = item.get("settled_usd_per_hour")
        cost = item.get("cost_usd")
        return cls(
            pod_uid=str(item["pod_uid"]),
            namespace=str(item["namespace"]),
            name=str(item["name"]),
            instance_type=str(item["instance_type"]),
            market=str(item["market"]),
            usd_per_hour=Decimal(item["usd_per_hour"]),
            bound_seconds=int(item["bound_seconds"]),
            estimate_usd=Decimal(item["estimate_usd"]),
            hold_month=str(item["hold_month"]),
            state=HoldState(item["state"]),
            generation=int(item["generation"]),
            held_at=parse_time(str(item["held_at"])),
            instance_id=None if item.get("instance_id") is None else str(item["instance_id"]),
            launched_at=_optional_time(item, "launched_at"),
            ended_at=_optional_time(item, "ended_at"),
            cost_usd=None if cost is None else Decimal(cost),
            settled_usd_per_hour=None if settled_price is None else Decimal(settled_price),
            billed_usd_per_hour=_optional_amount(item, "billed_usd_per_hour"),
            spent_by_month={
                str(k): Decimal(v) for k, v in dict(item.get("spent_by_month") or {}).items()
            },
            closed_at=_optional_time(item, "closed_at"),
        )


@dataclass(frozen=True)
class PodEntry:
    """One pod's part of one month: what it holds there and what it spent there."""

    month: str
    pod_uid: str
    namespace: str
    name: str
    instance_type: str
    market: str
    usd_per_hour: Decimal
    state: HoldState
    held_usd: Decimal
    spent_usd: Decimal
    seconds: Decimal
    instance_id: str | None = None
    launched_at: datetime | None = None
    ended_at: datetime | None = None
    # The rate the instance is billed at, once launched (see PodRecord).
    billed_usd_per_hour: Decimal | None = None

    @property
    def rate_usd_per_hour(self) -> Decimal:
        """What the pod costs an hour: its billed rate once launched, else what it holds."""
        return self.billed_usd_per_hour or self.usd_per_hour

    @classmethod
    def from_item(cls, month: str, item: Mapping[str, Any]) -> PodEntry:
        return cls(
            month=month,
            pod_uid=str(item["pod_uid"]),
            namespace=str(item["namespace"]),
            name=str(item["name"]),
            instance_type=str(item["instance_type"]),
            market=str(item["market"]),
            usd_per_hour=Decimal(item["usd_per_hour"]),
            state=HoldState(item["state"]),
            held_usd=Decimal(item.get("held_usd", 0)),
            spent_usd=Decimal(item.get("spent_usd", 0)),
            seconds=Decimal(item.get("seconds", 0)),
            instance_id=None if item.get("instance_id") is None else str(item["instance_id"]),
            launched_at=_optional_time(item, "launched_at"),
            ended_at=_optional_time(item, "ended_at"),
            billed_usd_per_hour=_optional_amount(item, "billed_usd_per_hour"),
        )


@dataclass(frozen=True)
class NamespaceSummary:
    namespace: str
    spent_usd: Decimal
    held_usd: Decimal
    limit_usd: Decimal | None
    pods: tuple[PodEntry, ...]

    @property
    def committed_usd(self) -> Decimal:
        return self.spent_usd + self.held_usd


@dataclass(frozen=True)
class MonthSummary:
    """A department's month: the totals that admission checks, per namespace and per pod.

    ``spent_usd`` and ``held_usd`` are the month's total item, which every ledger
    transaction updates together with the records; they equal the sums over ``pods``.
    ``limit_usd`` is the department limit the last hold of the month was checked against.
    """

    cluster: str
    department: str
    month: str
    spent_usd: Decimal
    held_usd: Decimal
    limit_usd: Decimal | None
    namespaces: tuple[NamespaceSummary, ...]

    @property
    def committed_usd(self) -> Decimal:
        return self.spent_usd + self.held_usd

    @property
    def left_usd(self) -> Decimal | None:
        if self.limit_usd is None:
            return None
        return max(self.limit_usd - self.committed_usd, Decimal(0))

    @property
    def pods(self) -> tuple[PodEntry, ...]:
        return tuple(p for n in self.namespaces for p in n.pods)


@dataclass(frozen=True)
class Carryover:
    """What pods held in the months before ``month`` may still spend in ``month``.

    Their holds count in the month they were made in, so without this a pod admitted
    late in one month would not count against the next. Each such hold that is still
    open keeps the part of its bound that falls in ``month`` (at its held price, never
    more than the hold) out of ``month``'s reach, until it is settled and its real spend
    in ``month`` counts there instead.
    """

    month: str
    total_usd: Decimal
    by_namespace: Mapping[str, Decimal]

    def of(self, namespace: str) -> Decimal:
        return self.by_namespace.get(namespace, Decimal(0))


# --- refusals ---


class LedgerError(Exception):
    """The ledger could not do what was asked."""


class RecordNotFound(LedgerError, LookupError):
    """No record for the pod: it never held budget in this department's ledger."""


class LedgerBusy(LedgerError):
    """Concurrent writers kept cancelling the transaction; trying later will help."""


Scope = Literal["department", "namespace"]


class BudgetExceeded(LedgerError):
    """A hold would take the month's committed spend past a limit; nothing was held.

    ``asked_usd`` is the pod's estimate, ``left_usd`` what the limit leaves (never
    negative), ``scope`` which limit: the department's or the namespace's share.
    """

    def __init__(
        self,
        *,
        scope: Scope,
        department: str,
        namespace: str,
        pod: str,
        what: str,
        month: str,
        asked_usd: Decimal,
        committed_usd: Decimal,
        limit_usd: Decimal,
        carried_usd: Decimal = Decimal(0),
    ) -> None:
        self.scope: Scope = scope
        self.department = department
        self.namespace = namespace
        self.pod = pod
        self.month = month
        self.asked_usd = asked_usd
        self.committed_usd = committed_usd
        self.limit_usd = limit_usd
        self.left_usd = max(limit_usd - committed_usd, Decimal(0))
        if scope == "department":
            whose = f"the {department} department has {cents(self.left_usd)} left of its"
            budget = f"{cents(limit_usd)} budget"
            fix = f"`pulumi config set budget <more>` and `pulumi up` in the {department} stack"
        else:
            whose = f"namespace {namespace} has {cents(self.left_usd)} left of its"
            budget = f"{cents(limit_usd)} share of the {department} department's budget"
            fix = f"raising namespace {namespace}'s share in the {department} stack"
        resets = iso(month_start(next_month(month)))
        carried = (
            f", {cents(carried_usd)} of it by pods launched the month before"
            if carried_usd > 0
            else ""
        )
        super().__init__(
            f"{what} for {pod} would hold {cents(asked_usd)}, but {whose} {budget} for "
            f"{month} ({cents(committed_usd)} spent or held{carried}). It can launch when the "
            f"month resets ({resets}), after {fix}, or with a shorter orca.research/max-lifetime."
        )
