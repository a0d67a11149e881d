"""The durable cost ledger: budget held before a launch, real spend after it.

One :class:`Ledger` serves one (cluster, department) on the envelope's DynamoDB table
(hash key ``pk``, range key ``sk``, both strings). A pod's life in it:

1. :meth:`Ledger.hold` before the launch opens the pod's record with an estimate
   (hourly price x lifetime bound) that counts against the month's limits at once.
2. :meth:`Ledger.launched` notes the instance and its launch time, so the accrued cost
   of a running pod can be read from the record alone (:meth:`Ledger.accrued_usd`).
3. :meth:`Ledger.settle` replaces the estimate by the cost from the instance's real
   launch and stop times, per second; or :meth:`Ledger.release` gives the estimate back
   when the launch never happened.

Item layout (``<dept>`` is ``<cluster>/<department>``)::

    pk                          sk                    what
    <dept>/pod/<pod uid>        record                the pod's record (PodRecord): state
                                                      held|settled|released, generation,
                                                      estimate, hold month, price, times,
                                                      cost and spent_by_month once settled
    <dept>/month/<YYYY-MM>      total                 the month's settled_usd, held_usd,
                                                      committed_usd (= settled + held) and
                                                      the limit_usd last checked
    <dept>/month/<YYYY-MM>      namespace/<ns>        the same for one namespace
    <dept>/month/<YYYY-MM>      pod/<pod uid>         the pod's part of the month (PodEntry):
                                                      held_usd, spent_usd, seconds, state

Why this layout:

- The record is keyed by pod UID alone, so a runtime restarted anywhere finds it
  (:meth:`Ledger.find`) without knowing the month, and a hold repeated after a crash or
  a retry meets the record it made (``attribute_not_exists``) and is counted once.
- A month is one partition: its totals, namespace totals and pod parts come back from
  one Query, which is what the report and the admission read.
- ``committed_usd`` is kept as its own number because a DynamoDB condition compares but
  cannot add: a hold is the condition ``committed_usd <= limit - estimate``.
- Every change is one TransactWriteItems of the record (conditioned on its state and
  generation), the month's total, the namespace's total and the pod's month part, so
  the totals are always the sum of the parts, two runtimes can never both admit the
  last dollar, and a settle or release done twice (a duplicate queue message, a retry,
  a second runtime) finds the record no longer ``held`` and changes nothing.

Months. The estimate is held in the month of the hold (the clock's, unless given). The
settled cost goes to the months the instance really ran in, split at each UTC month
boundary as AWS bills it (:func:`~orca.ledger_records.billed_parts`); the hold leaves
its month at the same moment. A month's spend is then what ran in it, which can pass
its limit when a pod admitted late in one month runs into the next: spend that
happened is recorded, not refused, and new holds in that month are refused.

Concurrent transactions on one item are cancelled by DynamoDB with
``TransactionConflict``; they are sent again after a jittered backoff, rereading the
record first, a few times before :class:`~orca.ledger_records.LedgerBusy`.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from orca.aws.clients import AwsClients
from orca.aws.ledger_table import Key, LedgerTable, PutNew, TransactionCancelled, Update
from orca.ledger_records import (
    OPEN_HOLD_MONTHS,
    BudgetExceeded,
    Carryover,
    HoldState,
    LedgerBusy,
    MonthSummary,
    NamespaceSummary,
    PodEntry,
    PodRecord,
    RecordNotFound,
    aware,
    billed_parts,
    cents,
    cost_usd,
    duration,
    estimate_usd,
    iso,
    month_of,
    month_start,
    months_before,
    months_between,
    seconds,
    usd,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_ZERO = Decimal(0)
# Backoff after a conflict: full jitter on 20 ms doubling, at most 1 s, 8 tries.
_BACKOFF_BASE = 0.02
_BACKOFF_CAP = 1.0
_ATTEMPTS = 8


class _Raced(Exception):
    """The record changed between our read and our write; read it again."""


class Ledger:
    """The cost ledger of one department, on the table ``table``."""

    def __init__(
        self,
        table: Any,
        *,
        cluster: str,
        department: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = _ATTEMPTS,
    ) -> None:
        self._table: LedgerTable = table
        self.cluster = cluster
        self.department = department
        self._clock = clock
        self._sleep = sleep
        self._attempts = attempts
        self._prefix = f"{cluster}/{department}"

    @classmethod
    def on(
        cls,
        clients: AwsClients,
        table_name: str,
        *,
        cluster: str,
        department: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> Ledger:
        """The ledger on the envelope's table (the stack's ``ledgerTable`` output)."""
        table = LedgerTable(clients.client("dynamodb"), table_name)
        return cls(table, cluster=cluster, department=department, clock=clock)

    # --- keys ---

    def _record_key(self, pod_uid: str) -> Key:
        return (f"{self._prefix}/pod/{pod_uid}", "record")

    def _month_pk(self, month: str) -> str:
        return f"{self._prefix}/month/{month}"

    def _total_key(self, month: str) -> Key:
        return (self._month_pk(month), "total")

    def _namespace_key(self, month: str, namespace: str) -> Key:
        return (self._month_pk(month), f"namespace/{namespace}")

    def _part_key(self, month: str, pod_uid: str) -> Key:
        return (self._month_pk(month), f"pod/{pod_uid}")

    # --- reading ---

    def find(self, pod_uid: str) -> PodRecord | None:
        """The pod's record, whatever its state; None if it never held budget here."""
        item = self._table.get(self._record_key(pod_uid))
        return None if item is None else PodRecord.from_item(item)

    def accrued_usd(self, pod_uid: str) -> Decimal:
        """What the pod has cost so far: settled, or per second since its launch."""
        record = self.find(pod_uid)
        return _ZERO if record is None else record.accrued_usd(self._clock())

    def month_summary(self, month: str | None = None) -> MonthSummary:
        """The month's totals, per namespace and per pod (the clock's month by default)."""
        month = month or month_of(self._clock())
        items = self._table.query(self._month_pk(month))
        total = next((i for i in items if i["sk"] == "total"), {})
        parts = [PodEntry.from_item(month, i) for i in items if i["sk"].startswith("pod/")]
        by_namespace: dict[str, list[PodEntry]] = defaultdict(list)
        for part in parts:
            by_namespace[part.namespace].append(part)

        namespaces = []
        for item in (i for i in items if i["sk"].startswith("namespace/")):
            name = str(item["namespace"])
            limit = item.get("limit_usd")
            namespaces.append(
                NamespaceSummary(
                    namespace=name,
                    spent_usd=Decimal(item.get("settled_usd", 0)),
                    held_usd=Decimal(item.get("held_usd", 0)),
                    limit_usd=None if limit is None else Decimal(limit),
                    pods=tuple(by_namespace.get(name, [])),
                )
            )
        limit = total.get("limit_usd")
        summary = MonthSummary(
            cluster=self.cluster,
            department=self.department,
            month=month,
            spent_usd=Decimal(total.get("settled_usd", 0)),
            held_usd=Decimal(total.get("held_usd", 0)),
            limit_usd=None if limit is None else Decimal(limit),
            namespaces=tuple(namespaces),
        )

        # The totals are written in the same transactions as the parts; a difference
        # means someone wrote to the table by hand.
        spent = sum((p.spent_usd for p in parts), _ZERO)
        held = sum((p.held_usd for p in parts), _ZERO)
        if (spent, held) != (summary.spent_usd, summary.held_usd):
            log.warning(
                "ledger %s %s: the month's totals (spent %s, held %s) differ from the sum of "
                "its pods (spent %s, held %s); the table was changed outside ORCA",
                self._prefix,
                month,
                summary.spent_usd,
                summary.held_usd,
                spent,
                held,
            )
        return summary

    def carried_into(self, month: str) -> Carryover:
        """What the open holds of the months before ``month`` may still spend in it.

        A hold from two months back that reaches this month is also counted, whole from
        this month's start, in the month between: that errs on the side of holding more.
        """
        start = month_start(month)
        total, by_namespace = _ZERO, dict[str, Decimal]()
        parts = [
            part
            for before in months_before(month, OPEN_HOLD_MONTHS)
            for part in self.month_summary(before).pods
        ]
        for part in parts:
            if part.held_usd <= 0:
                continue
            record = self.find(part.pod_uid)
            if record is None or record.state is not HoldState.HELD:
                continue
            bound_end = record.held_at + timedelta(seconds=record.bound_seconds)
            if bound_end <= start:
                continue
            share = min(cost_usd(record.usd_per_hour, seconds(bound_end - start)), part.held_usd)
            total += share
            by_namespace[record.namespace] = by_namespace.get(record.namespace, _ZERO) + share
        return Carryover(month, total, by_namespace)

    def records(self, start: datetime, end: datetime) -> list[PodEntry]:
        """Every pod's part of every month that [start, end) touches, month by month."""
        entries: list[PodEntry] = []
        for month in months_between(aware(start), aware(end)):
            items = self._table.query(self._month_pk(month), "pod/")
            entries.extend(PodEntry.from_item(month, i) for i in items)
        return entries

    # --- holding ---

    def hold(
        self,
        pod_uid: str,
        namespace: str,
        name: str,
        instance_type: str,
        market: str,
        usd_per_hour: Decimal,
        bound_seconds: int,
        limit_usd: Decimal,
        namespace_limit_usd: Decimal | None = None,
        month: str | None = None,
        carried_usd: Decimal = Decimal(0),
        namespace_carried_usd: Decimal = Decimal(0),
    ) -> PodRecord:
        """Hold the pod's estimate against the month's limits; raises BudgetExceeded.

        ``carried_usd`` (and ``namespace_carried_usd``) is what pods held in the month
        before may still spend in this one: it is kept free of the limit, since those
        holds count in their own month.

        A pod that already holds (a retried call, a restarted runtime) gets its record
        back unchanged, as does a settled one (check ``state``: it must not launch
        again). A released hold is opened again, as a new generation.
        """
        if usd_per_hour < 0 or bound_seconds <= 0 or limit_usd < 0:
            raise ValueError(
                f"a hold needs a price >= 0 ({usd_per_hour}), a bound > 0 ({bound_seconds} s) "
                f"and a limit >= 0 ({limit_usd})"
            )
        now = self._clock()
        price = usd(usd_per_hour)
        request = {
            "pod_uid": pod_uid,
            "namespace": namespace,
            "name": name,
            "instance_type": instance_type,
            "market": market,
            "usd_per_hour": price,
            "bound_seconds": int(bound_seconds),
            "estimate_usd": estimate_usd(price, bound_seconds),
            "hold_month": month or month_of(now),
            "state": HoldState.HELD.value,
            "held_at": iso(now),
        }
        what = f"{instance_type} {market} for {duration(bound_seconds)}"
        context = f"holding budget for {namespace}/{name} ({what})"
        limits = _Limits(limit_usd, namespace_limit_usd, carried_usd, namespace_carried_usd)
        return self._retrying(context, lambda: self._hold_once(request, limits, what))

    def _hold_once(self, request: dict[str, Any], limits: _Limits, what: str) -> PodRecord:
        uid, pod = request["pod_uid"], f"{request['namespace']}/{request['name']}"
        existing = self.find(uid)
        if existing is not None and existing.state is not HoldState.RELEASED:
            self._same_hold(existing, request)
            return existing

        # A first hold creates the record; a released one is opened again in place.
        generation = 1 if existing is None else existing.generation + 1
        item = {**request, "generation": generation}
        record_write: PutNew | Update
        if existing is None:
            record_write = PutNew(self._record_key(uid), item)
        else:
            stale = ("instance_id", "launched_at", "ended_at", "closed_at")
            record_write = Update(
                self._record_key(uid),
                set={**item, **{k: None for k in stale}},
                expect=_as_found(existing),
            )

        month, estimate = request["hold_month"], request["estimate_usd"]
        held = {"held_usd": estimate, "committed_usd": estimate}
        stamp = {"updated_at": request["held_at"]}
        limit_usd, namespace_limit_usd = limits.department, limits.namespace
        total = Update(
            self._total_key(month),
            set={**stamp, "limit_usd": usd(limit_usd)},
            add=held,
            at_most=("committed_usd", usd(limit_usd) - limits.carried - estimate),
        )
        namespace_set: dict[str, Any] = {**stamp, "namespace": request["namespace"]}
        if namespace_limit_usd is not None:
            namespace_set["limit_usd"] = usd(namespace_limit_usd)
        namespace = Update(
            self._namespace_key(month, request["namespace"]),
            set=namespace_set,
            add=held,
            at_most=(
                None
                if namespace_limit_usd is None
                else (
                    "committed_usd",
                    usd(namespace_limit_usd) - limits.namespace_carried - estimate,
                )
            ),
        )
        part = Update(
            self._part_key(month, uid),
            set={**stamp, **_part_fields(item)},
            add={"held_usd": estimate},
        )

        try:
            self._table.transact([record_write, total, namespace, part], f"holding for {pod}")
        except TransactionCancelled as e:
            self._refusal(e, request, what, limits)
            raise
        log.info(
            "held %s for %s (%s at %s/h) in %s",
            cents(estimate),
            pod,
            what,
            cents(request["usd_per_hour"]),
            month,
            extra={"pod": pod, "pod_uid": uid},
        )
        return PodRecord.from_item(item)

    def _refusal(
        self, e: TransactionCancelled, request: dict[str, Any], what: str, limits: _Limits
    ) -> None:
        """Raise what a cancelled hold means; return if it only needs another try."""
        if e.retryable:
            return
        record, total, namespace = e.reasons[0], e.reasons[1], e.reasons[2]
        if record.condition_failed:
            raise _Raced() from e
        for reason, scope, limit, carried in (
            (total, "department", limits.department, limits.carried),
            (namespace, "namespace", limits.namespace, limits.namespace_carried),
        ):
            if reason.condition_failed and limit is not None:
                committed = Decimal((reason.item or {}).get("committed_usd", 0)) + carried
                refusal = BudgetExceeded(
                    scope="department" if scope == "department" else "namespace",
                    department=self.department,
                    namespace=request["namespace"],
                    pod=f"{request['namespace']}/{request['name']}",
                    what=what,
                    month=request["hold_month"],
                    asked_usd=request["estimate_usd"],
                    committed_usd=committed,
                    limit_usd=usd(limit),
                    carried_usd=carried,
                )
                log.info("%s", refusal, extra={"pod_uid": request["pod_uid"]})
                raise refusal from e

    def _same_hold(self, existing: PodRecord, request: Mapping[str, Any]) -> None:
        asked = (
            request["instance_type"],
            request["market"],
            request["usd_per_hour"],
            request["bound_seconds"],
        )
        held = (
            existing.instance_type,
            existing.market,
            existing.usd_per_hour,
            existing.bound_seconds,
        )
        if asked != held:
            log.warning(
                "%s already has a %s ledger record (%s %s at %s/h for %s s); keeping it "
                "rather than holding %s %s at %s/h for %s s",
                existing.pod,
                existing.state,
                *held,
                *asked,
            )
        else:
            log.debug("%s already holds %s; counted once", existing.pod, existing.estimate_usd)

    # --- launching, settling, releasing ---

    def launched(
        self,
        pod_uid: str,
        instance_id: str,
        launched_at: datetime,
        billed_usd_per_hour: Decimal | None = None,
    ) -> PodRecord:
        """Note the instance, its launch time and the rate it is billed at (a spot instance
        is billed its zone's price, below the held ceiling) on a held record (idempotent)."""

        def once() -> PodRecord:
            record = self._found(pod_uid)
            if record.state is not HoldState.HELD:
                return record
            fields: dict[str, Any] = {"instance_id": instance_id, "launched_at": iso(launched_at)}
            if billed_usd_per_hour is not None:
                fields["billed_usd_per_hour"] = usd(billed_usd_per_hour)
            part = self._part_key(record.hold_month, pod_uid)
            self._transact_or_race(
                [
                    Update(self._record_key(pod_uid), set=fields, expect=_as_found(record)),
                    Update(part, set={**fields, "updated_at": iso(self._clock())}),
                ],
                f"noting {instance_id} for {record.pod}",
            )
            return self._found(pod_uid)

        return self._retrying(f"noting the launch of {instance_id}", once)

    def settle(
        self,
        pod_uid: str,
        instance_id: str,
        launched_at: datetime,
        ended_at: datetime,
        usd_per_hour: Decimal,
    ) -> PodRecord:
        """Replace the pod's hold by what the instance cost, once; returns the record.

        A record already settled is returned unchanged. A released record is settled
        too (its instance ran after all): the cost is added, no hold is taken away.
        """
        parts = [
            (month, secs, cost_usd(usd_per_hour, secs))
            for month, secs in billed_parts(aware(launched_at), aware(ended_at))
        ]
        return self._retrying(
            f"settling {instance_id}",
            lambda: self._settle_once(
                pod_uid, instance_id, launched_at, ended_at, usd(usd_per_hour), parts
            ),
        )

    def _settle_once(
        self,
        pod_uid: str,
        instance_id: str,
        launched_at: datetime,
        ended_at: datetime,
        usd_per_hour: Decimal,
        parts: list[tuple[str, Decimal, Decimal]],
    ) -> PodRecord:
        record = self._found(pod_uid)
        if record.state is HoldState.SETTLED:
            if record.instance_id != instance_id or record.ended_at != ended_at:
                log.warning(
                    "%s was settled already (%s ended %s); ignoring %s ended %s",
                    record.pod,
                    record.instance_id,
                    record.ended_at,
                    instance_id,
                    ended_at,
                )
            return record

        cost = sum((c for _, _, c in parts), _ZERO)
        now = iso(self._clock())
        times = {
            "instance_id": instance_id,
            "launched_at": iso(launched_at),
            "ended_at": iso(ended_at),
        }
        writes = _Writes(now, HoldState.SETTLED)
        if record.state is HoldState.HELD:
            self._take_back_hold(writes, record)
        for month, secs, part_cost in parts:
            spent = {"settled_usd": part_cost, "committed_usd": part_cost}
            writes.add(self._total_key(month), spent)
            writes.add(
                self._namespace_key(month, record.namespace), spent, {"namespace": record.namespace}
            )
            writes.add(
                self._part_key(month, pod_uid),
                {"spent_usd": part_cost, "seconds": secs},
                {
                    **_part_fields(_record_fields(record)),
                    **times,
                    "billed_usd_per_hour": usd_per_hour,
                },
            )

        settled = Update(
            self._record_key(pod_uid),
            set={
                **times,
                "state": HoldState.SETTLED.value,
                "cost_usd": cost,
                "settled_usd_per_hour": usd_per_hour,
                "billed_usd_per_hour": usd_per_hour,
                "spent_by_month": {month: part_cost for month, _, part_cost in parts},
                "closed_at": now,
            },
            expect=_as_found(record),
        )
        self._transact_or_race([settled, *writes.updates()], f"settling {record.pod}")
        log.info(
            "settled %s for %s: %s from %s to %s (held %s)",
            cents(cost),
            record.pod,
            instance_id,
            iso(launched_at),
            iso(ended_at),
            cents(record.estimate_usd) if record.state is HoldState.HELD else "nothing",
            extra={"pod": record.pod, "pod_uid": pod_uid},
        )
        return self._found(pod_uid)

    def release(self, pod_uid: str) -> PodRecord | None:
        """Give a hold whose launch never happened back, once; None if there was none."""

        def once() -> PodRecord | None:
            record = self.find(pod_uid)
            if record is None or record.state is not HoldState.HELD:
                return record
            now = iso(self._clock())
            writes = _Writes(now, HoldState.RELEASED)
            self._take_back_hold(writes, record)
            released = Update(
                self._record_key(pod_uid),
                set={"state": HoldState.RELEASED.value, "closed_at": now},
                expect=_as_found(record),
            )
            self._transact_or_race([released, *writes.updates()], f"releasing {record.pod}")
            log.info(
                "released %s held for %s in %s",
                cents(record.estimate_usd),
                record.pod,
                record.hold_month,
                extra={"pod": record.pod, "pod_uid": pod_uid},
            )
            return self.find(pod_uid)

        return self._retrying(f"releasing the hold of {pod_uid}", once)

    def _take_back_hold(self, writes: _Writes, record: PodRecord) -> None:
        back = {"held_usd": -record.estimate_usd, "committed_usd": -record.estimate_usd}
        writes.add(self._total_key(record.hold_month), back)
        writes.add(
            self._namespace_key(record.hold_month, record.namespace),
            back,
            {"namespace": record.namespace},
        )
        writes.add(
            self._part_key(record.hold_month, record.pod_uid),
            {"held_usd": -record.estimate_usd},
            _part_fields(_record_fields(record)),
        )

    # --- mechanics ---

    def _found(self, pod_uid: str) -> PodRecord:
        record = self.find(pod_uid)
        if record is None:
            raise RecordNotFound(
                f"pod {pod_uid} has no record in the {self._prefix} ledger: it never held "
                "budget here"
            )
        return record

    def _transact_or_race(self, writes: list[PutNew | Update], context: str) -> None:
        """Write; a failed condition on the record (the first write) means it changed."""
        try:
            self._table.transact(writes, context)
        except TransactionCancelled as e:
            if not e.retryable and e.reasons and e.reasons[0].condition_failed:
                raise _Raced() from e
            raise

    def _retrying(self, context: str, attempt: Callable[[], T]) -> T:
        last: Exception | None = None
        for tried in range(1, self._attempts + 1):
            try:
                return attempt()
            except TransactionCancelled as e:
                if not e.retryable:
                    raise
                last = e
            except _Raced as e:
                last = e
            delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**tried))
            log.debug(
                "%s: attempt %d/%d met a concurrent write (%s); again in %.3f s",
                context,
                tried,
                self._attempts,
                last,
                delay,
            )
            self._sleep(delay)
        raise LedgerBusy(
            f"{context}: {self._attempts} attempts met concurrent writes; try again later"
        ) from last


@dataclass(frozen=True)
class _Limits:
    """A hold's limits, and what pods of the month before keep of each (see hold)."""

    department: Decimal
    namespace: Decimal | None
    carried: Decimal
    namespace_carried: Decimal


class _Writes:
    """Updates merged per item: a transaction may touch each item only once."""

    def __init__(self, now: str, state: HoldState) -> None:
        self._now = now
        self._state = state
        self._adds: dict[Key, dict[str, Decimal]] = {}
        self._sets: dict[Key, dict[str, Any]] = {}

    def add(
        self, key: Key, amounts: Mapping[str, Decimal], fields: Mapping[str, Any] | None = None
    ) -> None:
        adds = self._adds.setdefault(key, {})
        for name, amount in amounts.items():
            adds[name] = adds.get(name, _ZERO) + amount
        sets = self._sets.setdefault(key, {"updated_at": self._now})
        if key[1].startswith("pod/"):
            sets["state"] = self._state.value
        sets.update(fields or {})

    def updates(self) -> list[Update]:
        return [Update(key, set=self._sets[key], add=adds) for key, adds in self._adds.items()]


def _as_found(record: PodRecord) -> dict[str, Any]:
    """The conditions that the record is still as it was read."""
    return {"state": record.state.value, "generation": record.generation}


def _record_fields(record: PodRecord) -> dict[str, Any]:
    return {
        "pod_uid": record.pod_uid,
        "namespace": record.namespace,
        "name": record.name,
        "instance_type": record.instance_type,
        "market": record.market,
        "usd_per_hour": record.usd_per_hour,
    }


def _part_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """What a pod's month part repeats from its record, so a report needs only the month."""
    names = ("pod_uid", "namespace", "name", "instance_type", "market", "usd_per_hour", "state")
    return {n: item[n] for n in names if n in item}
