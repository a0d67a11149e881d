"""What ``orca cost`` reports: a period's spend and holds per department, namespace and pod.

The figures come from the cost ledger (:mod:`orca.ledger`) alone, one
:meth:`~orca.ledger.Ledger.month_summary` per department and month the period touches,
and are kept in two columns that never mix:

- **spent**: settled cost, per second from the instance's real launch and stop times
  (the ledger's month parts, split at UTC month boundaries as AWS bills). A period
  shorter than a month counts the part of each run that fell inside it, pro rata per
  second of the run; a whole month counts the ledger's parts exactly, so the report's
  totals are the ledger's.
- **held**: the estimates of pods still running or about to launch (hourly price x
  lifetime bound). A hold is a commitment against its month's budget rather than spend
  at a moment, so a period counts the holds of every month it touches.

``committed`` is spent + held, what admission compares with the budget. The budget of
a department is the monthly limit its last hold was checked against (the ledger keeps
it per month), so a month that has seen no hold has no known budget; a period's budget
and what is ``left`` are those of the whole months it touches. What is left of a month
also keeps out what pods admitted the month before may still spend in it
(:class:`~orca.ledger_records.Carryover`), as admission does.

Amounts are :class:`~decimal.Decimal` USD at the ledger's precision (1e-6 USD);
:mod:`orca.cost_output` renders them, :mod:`orca.cost_plot` draws the month.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from orca.ledger_records import (
    MINIMUM_BILLED_SECONDS,
    USD_QUANTUM,
    Carryover,
    HoldState,
    MonthSummary,
    NamespaceSummary,
    PodEntry,
    cost_usd,
    month_of,
    month_start,
    months_between,
    next_month,
    seconds,
    usd,
)

_ZERO = Decimal(0)
_DAY = timedelta(days=1)


class PeriodError(ValueError):
    """The asked period is not one the report can count; the message says why."""


@dataclass(frozen=True)
class Period:
    """``[start, end)`` in UTC; ``label`` is how a person names it."""

    start: datetime
    end: datetime
    label: str

    @property
    def months(self) -> list[str]:
        return months_between(self.start, self.end)

    @property
    def whole_months(self) -> bool:
        """Whether the period is whole calendar months (its figures are the ledger's)."""
        return self.start == month_start(month_of(self.start)) and self.end == month_start(
            month_of(self.end)
        )


def period_for(
    now: datetime, month: str | None = None, since: date | None = None, until: date | None = None
) -> Period:
    """The period of ``--month`` and ``--since``/``--until`` (``until`` inclusive).

    Without ``--month``, ``--since`` alone runs to the end of today and ``--until`` alone
    starts with the first of its month; with it, both default to the month's bounds and
    must lie inside it. Without any, the current month (UTC).
    """
    if month is not None:
        try:
            first = month_start(month)
        except ValueError as e:
            raise PeriodError(f"--month {month!r} is not a month: use YYYY-MM, e.g. 2026-12") from e
        after = month_start(next_month(month))
    elif until is not None:
        first, after = month_start(month_of(_midnight(until))), _midnight(until) + _DAY
    else:
        current = month_of(now)
        first = month_start(current)
        # --since alone runs to the end of today; nothing at all is the current month.
        after = _midnight(now.date()) + _DAY if since else month_start(next_month(current))

    start = _midnight(since) if since else first
    end = _midnight(until) + _DAY if until else after
    if month is not None and not (first <= start and end <= after):
        raise PeriodError(
            f"--since/--until ({_day_range(start, end)}) reach outside --month {month}; "
            "leave --month out, or keep the dates inside it"
        )
    if end <= start:
        raise PeriodError(
            f"the period from {start.date()} to {(end - _DAY).date()} is empty: --since must "
            "not be after --until (or, without --until, after today)"
        )

    whole_month = start == month_start(month_of(start)) and end == month_start(
        next_month(month_of(start))
    )
    label = month_of(start) if whole_month else _day_range(start, end)
    return Period(start, end, label)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _day_range(start: datetime, end: datetime) -> str:
    last = (end - _DAY).date()
    return str(start.date()) if last == start.date() else f"{start.date()} to {last}"


# --- the report ---


@dataclass(frozen=True)
class PodCost:
    """One pod in the period: what it spent there and what it still holds."""

    department: str
    namespace: str
    name: str
    pod_uid: str
    instance_type: str
    market: str
    usd_per_hour: Decimal
    state: HoldState
    instance_id: str | None
    launched_at: datetime | None
    ended_at: datetime | None
    seconds: Decimal
    spent_usd: Decimal
    held_usd: Decimal
    # What a running pod has cost so far at the report's time: part of its hold, not spent.
    accrued_usd: Decimal | None = None

    @property
    def pod(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def committed_usd(self) -> Decimal:
        return self.spent_usd + self.held_usd

    @property
    def running(self) -> bool:
        """Launched and not yet settled: its hold covers the instance now running."""
        return self.state is HoldState.HELD and self.launched_at is not None


@dataclass(frozen=True)
class NamespaceCost:
    namespace: str
    spent_usd: Decimal
    held_usd: Decimal
    share_usd: Decimal | None  # the namespace's share of the budget, when it has one
    left_usd: Decimal | None  # what the share leaves in the whole months
    pods: tuple[PodCost, ...]

    @property
    def committed_usd(self) -> Decimal:
        return self.spent_usd + self.held_usd


@dataclass(frozen=True)
class MonthCost:
    """A whole month of a department as the ledger has it, with what last month carries in."""

    summary: MonthSummary
    carried: Carryover

    @property
    def month(self) -> str:
        return self.summary.month

    @property
    def spent_usd(self) -> Decimal:
        return self.summary.spent_usd

    @property
    def held_usd(self) -> Decimal:
        return self.summary.held_usd

    @property
    def committed_usd(self) -> Decimal:
        return self.summary.committed_usd

    @property
    def budget_usd(self) -> Decimal | None:
        """The limit the month's last hold was checked against."""
        return self.summary.limit_usd

    @property
    def carried_usd(self) -> Decimal:
        return self.carried.total_usd

    @property
    def left_usd(self) -> Decimal | None:
        """What new holds may still take: what admission would find left."""
        if self.budget_usd is None:
            return None
        return max(self.budget_usd - self.committed_usd - self.carried_usd, _ZERO)

    def namespace_share_usd(self, name: str) -> Decimal | None:
        found = self._namespace(name)
        return None if found is None else found.limit_usd

    def namespace_left_usd(self, name: str) -> Decimal | None:
        found = self._namespace(name)
        if found is None or found.limit_usd is None:
            return None
        return max(found.limit_usd - found.committed_usd - self.carried.of(name), _ZERO)

    def _namespace(self, name: str) -> NamespaceSummary | None:
        return next((n for n in self.summary.namespaces if n.namespace == name), None)


@dataclass(frozen=True)
class DepartmentCost:
    """A department in the period, with the ledger's whole-month figures in ``months``."""

    cluster: str
    department: str
    table: str
    spent_usd: Decimal
    held_usd: Decimal
    namespaces: tuple[NamespaceCost, ...]
    months: tuple[MonthCost, ...]

    @property
    def committed_usd(self) -> Decimal:
        return self.spent_usd + self.held_usd

    @property
    def budget_usd(self) -> Decimal | None:
        """The months' budgets added up; None while any month has none recorded."""
        return _sum_known(m.budget_usd for m in self.months)

    @property
    def left_usd(self) -> Decimal | None:
        return _sum_known(m.left_usd for m in self.months)

    @property
    def pods(self) -> tuple[PodCost, ...]:
        return tuple(p for n in self.namespaces for p in n.pods)


@dataclass(frozen=True)
class CostReport:
    period: Period
    generated_at: datetime
    departments: tuple[DepartmentCost, ...]

    @property
    def spent_usd(self) -> Decimal:
        return sum((d.spent_usd for d in self.departments), _ZERO)

    @property
    def held_usd(self) -> Decimal:
        return sum((d.held_usd for d in self.departments), _ZERO)

    @property
    def committed_usd(self) -> Decimal:
        return self.spent_usd + self.held_usd

    @property
    def budget_usd(self) -> Decimal | None:
        return _sum_known(d.budget_usd for d in self.departments)

    @property
    def left_usd(self) -> Decimal | None:
        return _sum_known(d.left_usd for d in self.departments)

    @property
    def empty(self) -> bool:
        """Nothing spent or held in the period, by any department."""
        return not any(d.pods for d in self.departments)


def _sum_known(amounts: Iterable[Decimal | None]) -> Decimal | None:
    known = list(amounts)
    if not known or any(a is None for a in known):
        return None
    return sum((a for a in known if a is not None), _ZERO)


class MonthReader(Protocol):
    """What the report reads of a department's ledger (:class:`orca.ledger.Ledger`)."""

    cluster: str
    department: str

    def month_summary(self, month: str | None = None) -> MonthSummary: ...

    def carried_into(self, month: str) -> Carryover: ...


def build_report(
    ledgers: Sequence[tuple[str, MonthReader]], period: Period, now: datetime
) -> CostReport:
    """The report of ``period`` over ``(table name, ledger)`` pairs, one per department."""
    departments = tuple(
        department_cost(
            ledger.cluster,
            ledger.department,
            table,
            period,
            [
                MonthCost(ledger.month_summary(month), ledger.carried_into(month))
                for month in period.months
            ],
            now,
        )
        for table, ledger in ledgers
    )
    return CostReport(period, now, departments)


def department_cost(
    cluster: str,
    department: str,
    table: str,
    period: Period,
    months: Sequence[MonthCost],
    now: datetime,
) -> DepartmentCost:
    """One department's figures for ``period`` from its summaries of the months it touches."""
    pods: dict[str, list[tuple[PodEntry, Decimal, Decimal]]] = {}
    for month in months:
        for entry in month.summary.pods:
            spent, secs = spent_in(entry, period.start, period.end)
            pods.setdefault(entry.pod_uid, []).append((entry, spent, secs))

    costs = [_pod_cost(department, parts, now) for parts in pods.values()]
    # A pod that ran in the period is listed even at no cost (a capacity block's); a hold
    # given back before any launch is not.
    counted = [c for c in costs if c.spent_usd or c.held_usd or c.seconds > 0]
    names = {n.namespace for m in months for n in m.summary.namespaces}
    names |= {c.namespace for c in counted}
    namespaces = tuple(
        NamespaceCost(
            namespace=name,
            spent_usd=sum((c.spent_usd for c in mine), _ZERO),
            held_usd=sum((c.held_usd for c in mine), _ZERO),
            share_usd=_sum_known(m.namespace_share_usd(name) for m in months),
            left_usd=_sum_known(m.namespace_left_usd(name) for m in months),
            pods=tuple(sorted(mine, key=lambda c: (c.name, c.pod_uid))),
        )
        for name in sorted(names)
        for mine in [[c for c in counted if c.namespace == name]]
    )
    return DepartmentCost(
        cluster=cluster,
        department=department,
        table=table,
        spent_usd=sum((n.spent_usd for n in namespaces), _ZERO),
        held_usd=sum((n.held_usd for n in namespaces), _ZERO),
        namespaces=namespaces,
        months=tuple(months),
    )


def _pod_cost(
    department: str, parts: list[tuple[PodEntry, Decimal, Decimal]], now: datetime
) -> PodCost:
    """A pod's month parts in the period as one line; the latest part has its state."""
    parts.sort(key=lambda p: p[0].month)
    latest = parts[-1][0]
    launches = [p[0].launched_at for p in parts if p[0].launched_at is not None]
    ends = [p[0].ended_at for p in parts if p[0].ended_at is not None]
    accrued = None
    if latest.state is HoldState.HELD and latest.launched_at is not None:
        ran = max(seconds(now - latest.launched_at), Decimal(MINIMUM_BILLED_SECONDS))
        accrued = cost_usd(latest.rate_usd_per_hour, ran)
    return PodCost(
        department=department,
        namespace=latest.namespace,
        name=latest.name,
        pod_uid=latest.pod_uid,
        instance_type=latest.instance_type,
        market=latest.market,
        usd_per_hour=latest.rate_usd_per_hour,
        state=latest.state,
        instance_id=latest.instance_id,
        launched_at=min(launches) if launches else None,
        ended_at=max(ends) if ends else None,
        seconds=sum((secs for _, _, secs in parts), _ZERO),
        spent_usd=sum((spent for _, spent, _ in parts), _ZERO),
        held_usd=sum((entry.held_usd for entry, _, _ in parts), _ZERO),
        accrued_usd=accrued,
    )


def spent_in(entry: PodEntry, start: datetime, end: datetime) -> tuple[Decimal, Decimal]:
    """The part of a month part's spend (and billed seconds) that fell in ``[start, end)``.

    The run in the month is ``[launched_at, ended_at)`` clipped to the month; its spend is
    spread evenly over it (AWS bills per second at one price), the 60 s minimum included.
    A run wholly inside the window counts exactly; a part without times (written by hand)
    counts whole, since its place in the month is unknown.
    """
    if not entry.spent_usd and not entry.seconds:
        return _ZERO, _ZERO
    first, after = month_start(entry.month), month_start(next_month(entry.month))
    if entry.launched_at is None or entry.ended_at is None:
        return entry.spent_usd, entry.seconds

    ran_from, ran_to = max(entry.launched_at, first), min(entry.ended_at, after)
    if start <= ran_from and ran_to <= end:
        return entry.spent_usd, entry.seconds
    if ran_to <= ran_from:
        # A run of no length (billed its minimum) belongs to its launch moment.
        counted = start <= ran_from < end
        return (entry.spent_usd, entry.seconds) if counted else (_ZERO, _ZERO)

    overlap = seconds(max(min(ran_to, end) - max(ran_from, start), timedelta(0)))
    fraction = overlap / seconds(ran_to - ran_from)
    return usd(entry.spent_usd * fraction), (entry.seconds * fraction).quantize(USD_QUANTUM)


# --- the month by day, for the plot ---


@dataclass(frozen=True)
class DailySpend:
    """A department's settled spend by the end of each elapsed day of a month."""

    department: str
    days: tuple[date, ...]
    cumulative_usd: tuple[Decimal, ...]


def daily_spend(summary: MonthSummary, now: datetime) -> DailySpend:
    """Cumulative settled spend at the end of each day of the month up to ``now``.

    The last point of the current month is ``now`` itself, so the curve ends where the
    ledger stands; a month still to come has no points.
    """
    first = month_start(summary.month)
    after = month_start(next_month(summary.month))
    days, totals = [], []
    day = first
    while day < after and day < now:
        until = min(day + _DAY, after, now)
        spent = (spent_in(entry, first, until)[0] for entry in summary.pods)
        days.append(day.date())
        totals.append(sum(spent, _ZERO))
        day += _DAY
    return DailySpend(summary.department, tuple(days), tuple(totals))
