"""Admission: a pod launches only when what it can cost fits what is left of the budget.

The reconciler asks :meth:`Admission.admit` after a pod's contract and bundle are in
order and before it writes the launch intent. The pod's *bound cost* is an hourly
price that its instance cannot be billed above, times a lifetime it cannot outlive,
and :meth:`orca.ledger.Ledger.hold` holds it in one DynamoDB transaction against the
department's monthly budget and the namespace's share, so that two workers or two
runtimes can never both take the last dollar. What the bound is made of, and why:

- **On-demand**: the Price List API's rate (:class:`orca.pricing.Prices`; the shipped
  table when the API is out of reach). An instance in an On-Demand Capacity Reservation
  is billed at the same rate, so a targeted launch holds that too.
- **Spot**: the pod's maximum price (``orca.research/max-spot-price``), or, without one,
  the on-demand price, which is EC2's default maximum. EC2 bills a spot instance the
  spot price in effect, which moves, but never above its maximum price: only the
  maximum bounds the bill, the current price does not.
- **Lifetime**: the pod's (``max-lifetime``, ``activeDeadlineSeconds`` or the
  department's default) plus the grace the runtime gives the agent before it ends the
  instance itself, and never less than the 60 s EC2 bills at least.

After the launch the ledger learns the instance and its launch time; the price it is
billed at is the on-demand rate, or for spot the zone's current spot price capped at
the maximum (the spot price of the zone at launch stands for the whole run: the ledger
records one rate per pod). When the instance is gone the ledger settles the pod per
second from EC2's launch time to the time EC2 moved it to ``shutting-down`` (billing
stops there), read from its state transition reason; where EC2 names no time, the first
time the runtime saw it gone stands in (one instance resync late at most), and the time
of settling when it was never seen gone (later than the truth: it over-counts rather
than under). A launch that never happened gives its hold back.

Spend that passes the budget (a pod admitted in one month running into the next, a
budget lowered below what is committed) stops new launches: holds are refused by the
ledger, and :meth:`Admission.sweep`, run every ``check_seconds``, refuses them too while
this month's spend (settled plus accrued by running pods) is over the budget. Running
pods then get the department's ``over_limit`` action: ``finish`` announces it on each
of them once and lets them run; ``stop`` fails them and ends their instances once spend
reaches the hard ceiling. Both are logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from orca import tags
from orca.aws.model import Instance
from orca.catalog import Catalog
from orca.contract import LaunchSpec
from orca.ledger import Ledger
from orca.ledger_records import (
    MINIMUM_BILLED_SECONDS,
    OPEN_HOLD_MONTHS,
    BudgetExceeded,
    Carryover,
    HoldState,
    PodEntry,
    PodRecord,
    cents,
    cost_usd,
    iso,
    month_of,
    month_start,
    months_before,
    next_month,
    seconds,
    usd,
)
from orca.metrics import Metrics
from orca.pricing import Price, Prices, PriceUnknownError, capacity_block_price
from orca.settings import BudgetSettings, NamespaceCaps

log = logging.getLogger(__name__)

# A refused pod is also tried again this soon after the month resets (clocks differ a little).
_AFTER_RESET = timedelta(seconds=5)
# A pod past its namespace's cap waits for another to end, which takes seconds to notice.
CAP_RETRY_SECONDS = 30.0
# How long what last month's pods may still spend this month is read for (Carryover).
_CARRIED_FOR = timedelta(minutes=1)


@dataclass(frozen=True)
class Admitted:
    """The pod's bound cost is held; ``left_usd`` is what the month had left before it."""

    record: PodRecord
    left_usd: Decimal
    limit_usd: Decimal
    # Where the held price came from, when it is not AWS's own answer (the Price List API
    # was out of reach), so the pod's Launching Event says so.
    price_note: str | None = None

    @property
    def ran_already(self) -> bool:
        """The ledger settled this pod: it ran once and must not launch again."""
        return self.record.state is HoldState.SETTLED

    def describe(self) -> str:
        """``at $0.10/h, holding $2.43 of the $99.00 left this month``, for the Event."""
        note = f" ({self.price_note})" if self.price_note else ""
        if self.record.market == "capacity-block":
            return "at no cost by the hour (the capacity block was paid for when it was bought)"
        return (
            f"at {hourly_rate(self.record.usd_per_hour)}{note}, holding "
            f"{cents(self.record.estimate_usd)} of the {cents(self.left_usd)} left this month"
        )


@dataclass(frozen=True)
class Refused:
    """The pod does not fit (or cannot be priced); ``fail`` ends it, else it waits."""

    reason: str
    message: str
    retry_seconds: float
    fail: bool


@dataclass(frozen=True)
class RunningPod:
    namespace: str
    name: str
    instance_type: str
    market: str
    usd_per_hour: Decimal
    launched_at: datetime

    def accrued_usd(self, since: datetime, now: datetime) -> Decimal:
        start = max(self.launched_at, since)
        return cost_usd(self.usd_per_hour, seconds(now - start)) if now > start else Decimal(0)


@dataclass(frozen=True)
class SpendState:
    """The month as the last sweep read it."""

    month: str
    spent_usd: Decimal
    limit_usd: Decimal
    over: bool
    stop: bool


Verdict = tuple[Literal["announce", "stop"], str]


def hourly_rate(usd_per_hour: Decimal) -> str:
    """``$98.32/h``; rates under a dollar keep four places (``$0.1008/h``)."""
    if usd_per_hour >= 1:
        return f"{cents(usd_per_hour)}/h"
    return f"${usd_per_hour.quantize(Decimal('0.0001'))}/h"


class Admission:
    """Holds, notes, settles and releases pods' budget; watches the month's spend."""

    def __init__(
        self,
        budget: BudgetSettings,
        ledger: Ledger,
        prices: Prices,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        gpus_of: Callable[[str], int] | None = None,
    ) -> None:
        self.budget = budget
        self.ledger = ledger
        self.prices = prices
        self.metrics = metrics
        self.clock = clock
        # GPUs of an instance type, for namespace caps (the runtime's catalog).
        self.gpus_of = gpus_of or _shipped_gpus
        self._lock = threading.Lock()
        # Counting a capped namespace's pods and holding for one more is one step.
        self._caps_lock = threading.Lock()
        self._carried: Carryover | None = None
        self._carried_until = datetime.min.replace(tzinfo=UTC)
        self._running: dict[str, RunningPod] = {}
        self._state: SpendState | None = None
        self._announced: set[tuple[str, str]] = set()  # (month, pod uid)

    # --- before the launch ---

    def hold_price(self, spec: LaunchSpec) -> Price:
        """The hourly price the pod's instance cannot be billed above."""
        name = spec.instance_type.name
        if spec.market == "capacity-block":
            return capacity_block_price(name, self.clock())
        if spec.market == "spot":
            on_demand = self.prices.on_demand(name)
            if spec.max_spot_price is not None:
                return dataclasses.replace(
                    on_demand,
                    market="spot",
                    usd_per_hour=spec.max_spot_price,
                    source="spot-ceiling",
                    detail="the pod's max spot price, which EC2 never bills a spot instance above",
                )
            return dataclasses.replace(
                on_demand,
                market="spot",
                source="spot-ceiling",
                detail="the on-demand price, EC2's default max spot price and the most a spot "
                f"instance is billed ({on_demand.detail})",
            )
        if spec.reservation.preference == "targeted":
            return self.prices.capacity_reservation(name)
        return self.prices.on_demand(name)

    def admit(
        self, pod: Mapping[str, Any], spec: LaunchSpec, bound: timedelta
    ) -> Admitted | Refused:
        """Hold the pod's bound cost (price x ``bound``); a pod is held once."""
        meta = pod["metadata"]
        uid, namespace, name = meta["uid"], meta["namespace"], meta["name"]

        # A pod that holds already (a retry, a restarted runtime) keeps its hold as it is,
        # unless what it would launch changed since (its annotations were edited while it
        # waited): a hold for one instance type must not pay for another.
        record = self.ledger.find(uid)
        bound_seconds = max(math.ceil(bound.total_seconds()), MINIMUM_BILLED_SECONDS)
        if record is not None and not _hold_covers(
            record, spec, bound_seconds, lambda: self._price_or_none(spec)
        ):
            log.info(
                "pod %s/%s now asks for %s %s for %ds; its hold for %s %s is given back and "
                "a new one taken",
                namespace,
                name,
                spec.instance_type.name,
                spec.market,
                bound_seconds,
                record.instance_type,
                record.market,
                extra={"pod_uid": uid},
            )
            record = self.ledger.release(uid)
            self._forget(uid)
        price_note: str | None = None
        if record is None or record.state is HoldState.RELEASED:
            try:
                price = self.hold_price(spec)
            except PriceUnknownError as e:
                self.metrics.budget_refusals(scope="price").inc()
                message = (
                    f"{e}. ORCA cannot hold budget for a pod it cannot price, so the pod waits "
                    f"and ORCA tries again every {self.budget.retry_seconds:.0f} s"
                )
                return Refused("PriceUnknown", message, self.budget.retry_seconds, fail=False)
            # A pod that costs nothing by the hour (a capacity block's) adds nothing to the
            # month's spend, so spend past the budget does not keep it back.
            refused = self._over_budget(f"{namespace}/{name}") if price.usd_per_hour else None
            if refused is not None:
                return refused
            caps = self.budget.namespace_caps.get(namespace)
            with self._caps_lock if caps is not None else contextlib.nullcontext():
                if caps is not None:
                    capped = self._past_cap(uid, namespace, name, spec, caps)
                    if capped is not None:
                        return capped
                carried = self._carried_over()
                try:
                    record = self.ledger.hold(
                        uid,
                        namespace,
                        name,
                        spec.instance_type.name,
                        spec.market,
                        price.usd_per_hour,
                        bound_seconds,
                        self.budget.monthly_usd,
                        self.budget.namespace_limit_usd(namespace),
                        carried_usd=carried.total_usd,
                        namespace_carried_usd=carried.of(namespace),
                    )
                except BudgetExceeded as e:
                    self.metrics.budget_refusals(scope=e.scope).inc()
                    return self._refusal("BudgetExceeded", str(e))
            if self._rests_on_shipped_table(spec):
                price_note = price.detail

        summary = self.ledger.month_summary(record.hold_month)
        carried_in = (
            self._carried_over().total_usd if record.hold_month == month_of(self.clock()) else 0
        )
        left_after = self.budget.monthly_usd - summary.committed_usd - carried_in
        held = record.estimate_usd if record.state is HoldState.HELD else Decimal(0)
        left = max(left_after + held, Decimal(0))
        return Admitted(record, left, self.budget.monthly_usd, price_note)

    def _carried_over(self) -> Carryover:
        """What pods held last month may still spend in this one (:class:`Carryover`).

        Read at most once a minute: the figure only falls as those pods end, so an older
        one errs on the safe side.
        """
        now = self.clock()
        month = month_of(now)
        cached = self._carried
        if cached is not None and cached.month == month and now < self._carried_until:
            return cached
        self._carried = self.ledger.carried_into(month)
        self._carried_until = now + _CARRIED_FOR
        return self._carried

    def open_holds(self) -> list[PodEntry]:
        """The pods whose hold is open, made this month or in the months a hold may still
        be open from (:data:`~orca.ledger_records.OPEN_HOLD_MONTHS`)."""
        this_month = month_of(self.clock())
        months = [*reversed(months_before(this_month, OPEN_HOLD_MONTHS)), this_month]
        return [
            pod
            for month in months
            for pod in self.ledger.month_summary(month).pods
            if pod.held_usd > 0
        ]

    def _past_cap(
        self, uid: str, namespace: str, name: str, spec: LaunchSpec, caps: NamespaceCaps
    ) -> Refused | None:
        """A refusal when one more pod would take the namespace past a cap it has."""
        mine = [p for p in self.open_holds() if p.namespace == namespace and p.pod_uid != uid]
        instances = len(mine) + 1
        gpus = sum(self.gpus_of(p.instance_type) for p in mine) + spec.instance_type.gpus
        over = []
        if caps.instances is not None and instances > caps.instances:
            over.append(f"{len(mine)} of its {caps.instances} instances")
        if caps.gpus is not None and spec.instance_type.gpus and gpus > caps.gpus:
            over.append(
                f"{gpus - spec.instance_type.gpus} of its {caps.gpus} GPUs, and "
                f"{spec.instance_type.name} has {spec.instance_type.gpus}"
            )
        if not over:
            return None
        self.metrics.budget_refusals(scope="namespace-cap").inc()
        message = (
            f"{namespace}/{name} waits: namespace {namespace} runs (or is launching) "
            f"{' and '.join(over)}. It launches when one of them ends; ORCA tries again every "
            f"{CAP_RETRY_SECONDS:.0f} s"
        )
        return Refused("NamespaceCapReached", message, CAP_RETRY_SECONDS, fail=False)

    def _price_or_none(self, spec: LaunchSpec) -> Decimal | None:
        """The hold price for ``spec`` now; None when it cannot be priced (kept as held)."""
        try:
            return self.hold_price(spec).usd_per_hour
        except PriceUnknownError:
            return None

    def _rests_on_shipped_table(self, spec: LaunchSpec) -> bool:
        """Whether the hold's price came from ORCA's shipped table, not from AWS."""
        if spec.market == "capacity-block":
            return False  # prepaid
        if spec.market == "spot" and spec.max_spot_price is not None:
            return False  # the pod's own bid
        return self.prices.on_demand(spec.instance_type.name).source == "shipped-table"

    def _over_budget(self, pod: str) -> Refused | None:
        """Refuse while this month's spend is over the budget, even where a hold would fit
        (spend of pods held in the month before lands in this one)."""
        state = self._state
        if state is None or not state.over or state.month != month_of(self.clock()):
            return None
        self.metrics.budget_refusals(scope="department").inc()
        resets = iso(month_start(next_month(state.month)))
        department = self.ledger.department
        why = (
            f"{pod} cannot launch: the {department} department has spent "
            f"{cents(state.spent_usd)} of its {cents(state.limit_usd)} budget for {state.month}, "
            f"so no new pod launches until the month resets ({resets}) or the budget is raised "
            f"(`pulumi config set budget <more>` and `pulumi up` in the {department} stack)."
        )
        return self._refusal("BudgetExceeded", why)

    def _refusal(self, reason: str, why: str) -> Refused:
        fail = self.budget.when_refused == "fail"
        if fail:
            then = " The pod fails (the department's setting ORCA_BUDGET__WHEN_REFUSED=fail)."
        else:
            then = (
                f" The pod waits; ORCA tries again every {self.budget.retry_seconds:.0f} s and "
                "when the month resets."
            )
        return Refused(reason, why + then, self._retry_after(), fail)

    def _retry_after(self) -> float:
        """The retry interval, or sooner when the month (and its budget) resets before it."""
        now = self.clock()
        reset = month_start(next_month(month_of(now))) + _AFTER_RESET
        return max(1.0, min(self.budget.retry_seconds, (reset - now).total_seconds()))

    def release(self, pod_uid: str) -> None:
        """The launch will not happen: give the hold back (once; nothing if none)."""
        self.ledger.release(pod_uid)
        self._forget(pod_uid)

    # --- while it runs ---

    def launched(self, pod: Mapping[str, Any], instance: Instance) -> Decimal | None:
        """Note the instance on the pod's hold; returns the hourly price it is billed at."""
        uid = pod["metadata"]["uid"]
        record = self.ledger.find(uid)
        if record is None:
            log.warning(
                "pod %s/%s has no ledger record; its instance %s is not counted against the budget",
                pod["metadata"]["namespace"],
                pod["metadata"]["name"],
                instance.instance_id,
                extra={"pod_uid": uid},
            )
            return None
        price = self.billed_price(record, instance)
        record = self.ledger.launched(uid, instance.instance_id, instance.launch_time, price)
        self._remember(uid, record, price, instance.launch_time)
        return price

    def billed_price(self, record: PodRecord, instance: Instance) -> Decimal:
        """The rate the instance is billed at: its zone's spot price (capped) or the hold's."""
        if not instance.spot:
            return record.usd_per_hour
        try:
            quote = self.prices.spot(instance.instance_type, instance.availability_zone)
        except PriceUnknownError:
            return record.usd_per_hour
        return min(quote.usd_per_hour, record.usd_per_hour)

    def following(self, pod: Mapping[str, Any], instance: Instance) -> None:
        """Count a running pod found after a restart (price from its annotation)."""
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self._running:
                return
        annotated = (pod["metadata"].get("annotations") or {}).get(tags.PRICE_ANNOTATION)
        record = self.ledger.find(uid)
        if record is None or record.state is not HoldState.HELD:
            return
        price = Decimal(annotated) if annotated else _billed_rate(record)
        self._remember(uid, record, price, instance.launch_time)

    def _remember(self, uid: str, record: PodRecord, price: Decimal, launched: datetime) -> None:
        running = RunningPod(
            record.namespace, record.name, record.instance_type, record.market, price, launched
        )
        with self._lock:
            self._running[uid] = running
        self.metrics.pod_price.labels(
            namespace=running.namespace,
            pod=running.name,
            instance_type=running.instance_type,
            market=running.market,
        ).set(float(price))

    def price_of(self, pod_uid: str) -> Decimal | None:
        with self._lock:
            running = self._running.get(pod_uid)
        return None if running is None else running.usd_per_hour

    # --- after it ran ---

    def settle(
        self,
        pod_uid: str,
        instance: Instance,
        ended_at: datetime,
        usd_per_hour: Decimal | None,
    ) -> PodRecord | None:
        """Record what the pod's instance cost, once; None if the pod held nothing."""
        record = self.ledger.find(pod_uid)
        if record is None:
            return None
        if record.state is HoldState.SETTLED:
            self._forget(pod_uid)
            return record
        # After a restart the rate noted at launch is the ledger's, not this process's.
        price = usd_per_hour if usd_per_hour is not None else _billed_rate(record)
        ended = max(ended_at, instance.launch_time)
        if instance.spot and instance.availability_zone:
            price = self._spot_rate_over(record, instance, ended, price)
        settled = self.ledger.settle(
            pod_uid, instance.instance_id, instance.launch_time, ended, usd(price)
        )
        self._forget(pod_uid)
        return settled

    def _spot_rate_over(
        self, record: PodRecord, instance: Instance, ended: datetime, at_launch: Decimal
    ) -> Decimal:
        """A spot run's rate as EC2 bills it: the zone's price each second it ran, never
        above the ceiling held (EC2 reclaims the instance rather than bill more)."""
        rate = self.prices.spot_rate_over(
            instance.instance_type,
            instance.availability_zone,
            instance.launch_time,
            ended,
            at_launch,
        )
        if rate is None:
            return at_launch
        billed = min(rate, record.usd_per_hour)
        if rate != at_launch:
            capped = f", capped at the held {hourly_rate(billed)}" if billed < rate else ""
            log.info(
                "pod %s: the spot price of %s in %s moved while it ran; it averaged %s "
                "(%s at launch)%s",
                record.pod,
                instance.instance_type,
                instance.availability_zone,
                hourly_rate(rate),
                hourly_rate(at_launch),
                capped,
                extra={"pod_uid": record.pod_uid},
            )
        return billed

    def _forget(self, pod_uid: str) -> None:
        with self._lock:
            running = self._running.pop(pod_uid, None)
        if running is not None:
            # A label set that was never published is not there to remove.
            with contextlib.suppress(KeyError):
                self.metrics.pod_price.remove(
                    running.namespace, running.name, running.instance_type, running.market
                )

    # --- the month's spend ---

    def sweep(self) -> SpendState:
        """Read the month's spend, publish it, and decide whether it is over the budget."""
        now = self.clock()
        month = month_of(now)
        summary = self.ledger.month_summary(month)
        since = month_start(month)
        with self._lock:
            running = dict(self._running)

        by_namespace: dict[str, Decimal] = {n.namespace: n.spent_usd for n in summary.namespaces}
        accrued = Decimal(0)
        for pod in running.values():
            part = pod.accrued_usd(since, now)
            accrued += part
            by_namespace[pod.namespace] = by_namespace.get(pod.namespace, Decimal(0)) + part
        spent = summary.spent_usd + accrued
        limit = self.budget.monthly_usd
        over = spent > limit
        stop = self.budget.over_limit == "stop" and spent >= self.budget.hard_ceiling_usd
        state = SpendState(month, spent, limit, over, stop)
        # The verdict on running pods first: nothing read after this may hold it up.
        before = self._state
        self._state = state
        self._log_crossing(before, state, len(running))

        self.metrics.spent_usd.set(float(spent))
        self.metrics.budget_usd.set(float(limit))
        self.metrics.burn_usd_per_hour.set(float(sum(p.usd_per_hour for p in running.values())))
        for namespace, amount in by_namespace.items():
            self.metrics.namespace_spent_usd.labels(
                department=self.metrics.department, namespace=namespace
            ).set(float(amount))
        # What new holds may take: the budget less this month's spend and holds, and less
        # what pods admitted before this month may still spend in it (as admission counts).
        # Read last, as its own ledger reads; the next sweep tries again if they fail.
        left = limit - summary.committed_usd - self._carried_over().total_usd
        self.metrics.remaining_usd.set(float(max(left, Decimal(0))))
        return state

    def _log_crossing(self, before: SpendState | None, now: SpendState, running: int) -> None:
        was_over = before is not None and before.month == now.month and before.over
        was_stopping = before is not None and before.month == now.month and before.stop
        department = self.ledger.department
        if now.over and not was_over:
            action = (
                "running pods are stopped at the hard ceiling "
                + cents(self.budget.hard_ceiling_usd)
                if self.budget.over_limit == "stop"
                else "running pods finish"
            )
            log.warning(
                "the %s department has spent %s of its %s budget for %s: no new pod launches "
                "until the month resets; %s (%d running)",
                department,
                cents(now.spent_usd),
                cents(now.limit_usd),
                now.month,
                action,
                running,
            )
        if now.stop and not was_stopping:
            log.warning(
                "the %s department's spend %s reached its hard ceiling %s (%s%% over the "
                "budget): stopping its %d running pods",
                department,
                cents(now.spent_usd),
                cents(self.budget.hard_ceiling_usd),
                self.budget.hard_ceiling_percent,
                running,
            )
        if before is not None and before.over and not now.over:
            log.info(
                "the %s department's spend for %s is within its budget again; pods launch",
                department,
                now.month,
            )

    def verdict(self, pod_uid: str) -> Verdict | None:
        """What to do with a running pod under the last sweep: announce once, or stop."""
        state = self._state
        if state is None or not state.over:
            return None
        with self._lock:
            running = self._running.get(pod_uid)
        # Stopping a pod whose instance costs nothing an hour (a capacity block's) saves nothing.
        if running is None or running.usd_per_hour == 0:
            return None
        department = self.ledger.department
        spent = (
            f"The {department} department has spent {cents(state.spent_usd)} of its "
            f"{cents(state.limit_usd)} budget for {state.month}"
        )
        if state.stop:
            return (
                "stop",
                f"{spent}, past its hard ceiling {cents(self.budget.hard_ceiling_usd)} "
                f"({self.budget.hard_ceiling_percent}% over the budget); the department stops "
                "its running pods there (ORCA_BUDGET__OVER_LIMIT=stop)",
            )
        key = (state.month, pod_uid)
        with self._lock:
            if key in self._announced:
                return None
            self._announced.add(key)
        then = (
            f"it is stopped if spend reaches {cents(self.budget.hard_ceiling_usd)}"
            if self.budget.over_limit == "stop"
            else "it runs to its end (ORCA_BUDGET__OVER_LIMIT=finish)"
        )
        return ("announce", f"{spent}; no new pod launches until the month resets, and {then}")


class BudgetWatch:
    """Runs :meth:`Admission.sweep` every ``check_seconds`` in a thread of its own."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="budget-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        interval = self.admission.budget.check_seconds
        while not self._stop.is_set():
            try:
                self.admission.sweep()
            except Exception as e:  # the ledger unreachable: holds fail closed meanwhile
                log.warning("reading the month's spend failed (%s); again in %.0f s", e, interval)
            self._stop.wait(interval)


def _hold_covers(
    record: PodRecord,
    spec: LaunchSpec,
    bound_seconds: int,
    price_now: Callable[[], Decimal | None],
) -> bool:
    """Whether an open hold still bounds what the pod would launch now: the same type and
    market, a bound as long, and a price as high (a raised max spot price is billed).

    Only a hold without an instance can be traded in: once an instance runs, the hold is
    that instance's, whatever the pod says now.
    """
    if record.state is not HoldState.HELD or record.instance_id is not None:
        return True
    if (
        record.instance_type != spec.instance_type.name
        or record.market != spec.market
        or record.bound_seconds < bound_seconds
    ):
        return False
    price = price_now()
    return price is None or record.usd_per_hour >= usd(price)


def _billed_rate(record: PodRecord) -> Decimal:
    """The rate the ledger noted at launch, else the held one (the most it is billed)."""
    return record.billed_usd_per_hour or record.usd_per_hour


def _shipped_gpus(instance_type: str) -> int:
    known = Catalog.shipped().get(instance_type)
    return known.gpus if known is not None else 0
