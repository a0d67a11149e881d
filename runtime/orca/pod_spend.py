"""The money side of one pod: its hold, its price on the pod, and what it cost.

:mod:`orca.admission` decides and :mod:`orca.ledger` records; :class:`PodSpend` is
where a pod's reconcile meets them, and what the pod shows of it:

- before the launch intent is written, the pod's bound cost is held
  (:meth:`PodSpend.admit`); a pod that does not fit waits or fails, with a Warning;
- a launch that will not happen gives the hold back (:meth:`PodSpend.release`);
- after the launch the instance is noted on the hold, and the price it is billed at
  goes on the pod (:meth:`PodSpend.launched`);
- while it runs, the department's over-budget action applies, and the accrued cost
  on the pod is brought up to date every :data:`COST_REFRESH` (:meth:`PodSpend.follow`);
- once its instance is gone, the ledger settles what it cost and the pod gets the
  cost and a Cost Event, or the hold is given back when no instance ever ran
  (:meth:`PodSpend.settle`).

A settle needs the time billing stopped: the time EC2 moved the instance to
``shutting-down``, from its state transition reason; where EC2 names none, the time
this process ended the instance or first saw it gone (:meth:`PodSpend.saw_ended`);
else the time of settling, which over-counts rather than under.

:meth:`PodSpend.settle_instance` settles from the UID and the instance alone, for an
instance whose pod object is gone, and :meth:`PodSpend.held_pods` lists the open holds,
so that the garbage collector can settle those whose pod went while no runtime watched.
Without a budget (no :class:`Admission`) nothing here does anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from orca import status as pod_status
from orca import tags
from orca.admission import Admission, Admitted, Refused, hourly_rate
from orca.aws.ec2 import Ec2
from orca.aws.model import Instance
from orca.bootstrap import DEADLINE_GRACE
from orca.contract import LaunchSpec
from orca.kube.events import EventRecorder
from orca.ledger_records import (
    MINIMUM_BILLED_SECONDS,
    HoldState,
    PodEntry,
    PodRecord,
    cost_usd,
    cost_words,
    duration,
    seconds,
    usd,
)
from orca.observed import Pod
from orca.pod_writer import PodWriter
from orca.workqueue import WorkQueue

log = logging.getLogger(__name__)

# How often a running pod's accrued cost annotation is brought up to date.
COST_REFRESH = timedelta(minutes=5)
# EC2 lists a terminated instance for about an hour after it ends (DescribeInstances).
EC2_LISTS_ENDED = timedelta(hours=1)
# What the ledger names an instance it charges for without knowing its id.
UNLISTED_INSTANCE = "unknown: EC2 no longer lists it"


class PodSpend:
    def __init__(
        self,
        admission: Admission | None,
        ec2: Ec2,
        writer: PodWriter,
        events: EventRecorder,
        queue: WorkQueue,
        clock: Callable[[], datetime],
    ) -> None:
        self.admission = admission
        self.ec2 = ec2
        self.writer = writer
        self.events = events
        self.queue = queue
        self.clock = clock
        # When this process ended, or first saw gone, each pod's instance: the end time a
        # settle uses when EC2's transition reason names none.
        self._ended_seen: dict[str, datetime] = {}
        self._settled: set[str] = set()

    @property
    def budgeted(self) -> bool:
        """Pods are held against a budget (else they launch without asking)."""
        return self.admission is not None

    # Before the launch.

    def admit(self, pod: Pod, spec: LaunchSpec, deadline: datetime) -> Admitted | None:
        """Hold the pod's bound cost; None when it does not fit (it waits or fails)."""
        assert self.admission is not None
        uid = pod["metadata"]["uid"]
        # The runtime ends an instance DEADLINE_GRACE after its deadline at the latest.
        bound = deadline + DEADLINE_GRACE - self.clock()
        result = self.admission.admit(pod, spec, bound)
        if isinstance(result, Refused):
            if result.fail:
                self.writer.fail(pod, result.reason, result.message)
            else:
                self.writer.wait(pod, result.reason, result.message)
                self.queue.defer(uid, result.retry_seconds)
            return None
        if result.ran_already:
            log.warning(
                "pod %s was settled in the ledger already (it ran as %s); not launching again",
                result.record.pod,
                result.record.instance_id,
            )
            return None
        return result

    def release(self, uid: str) -> None:
        """The launch will not happen: give the pod's hold back."""
        if self.admission is not None:
            self.admission.release(uid)

    def launched(self, pod: Pod, instance: Instance) -> dict[str, str | None]:
        """Note the instance on the pod's hold; the annotations that give its billed price."""
        price = self.admission.launched(pod, instance) if self.admission else None
        # The billed price goes on the pod; the Launching Event named the held one.
        return {} if price is None else {tags.PRICE_ANNOTATION: str(usd(price))}

    # While it runs.

    def follow(self, pod: Pod, instance: Instance) -> bool:
        """Apply the over-budget action and keep the pod's cost current.

        True when the action stopped the pod: it is Failed, and the caller ends its
        instance.
        """
        if self.admission is None:
            return False
        uid = pod["metadata"]["uid"]
        self.admission.following(pod, instance)
        verdict = self.admission.verdict(uid)
        if verdict is not None:
            kind, message = verdict
            if kind == "stop":
                message += f"; terminating {instance.instance_id}"
                log.warning("%s", message, extra={"pod_uid": uid})
                self.writer.fail(pod, "BudgetExceeded", message)
                return True
            log.info("%s: %s", uid, message, extra={"pod_uid": uid})
            self.events.warning(pod, "BudgetExceeded", message)
        self._refresh_cost(pod, instance)
        return False

    def _refresh_cost(self, pod: Pod, instance: Instance) -> None:
        assert self.admission is not None
        price = self.admission.price_of(pod["metadata"]["uid"])
        annotations = pod["metadata"].get("annotations") or {}
        as_of = annotations.get(tags.COST_AS_OF_ANNOTATION)
        now = self.clock()
        if price is None:
            return
        if as_of is not None and now - pod_status.parse_timestamp(as_of) < COST_REFRESH:
            return
        ran = max(seconds(now - instance.launch_time), Decimal(MINIMUM_BILLED_SECONDS))
        self.writer.annotate(
            pod,
            {
                tags.COST_ANNOTATION: str(cost_usd(price, ran)),
                tags.COST_AS_OF_ANNOTATION: pod_status.timestamp(now),
            },
        )

    # After it ran.

    def saw_ended(self, uid: str, at: datetime) -> None:
        """This process ended the pod's instance, or saw it gone, at ``at`` (first time kept)."""
        self._ended_seen.setdefault(uid, at)

    def settle(self, uid: str, pod: Pod | None) -> None:
        """Once the pod's instance is gone: settle what it cost, or give the hold back.

        With the pod, its cost goes on it (annotations and a Cost Event).
        """
        record = self._held_record(uid)
        if record is None or self.admission is None:
            return
        if record.instance_id:
            found = self.ec2.get_instances([record.instance_id])
        else:
            # A runtime stopped between the launch and noting it: the tags know the instance.
            found = self.ec2.list_instances({tags.POD_UID: uid}, include_terminated=True)
        if not found and (record.instance_id or self.clock() - record.held_at > EC2_LISTS_ENDED):
            # Noted as launched, or held so long ago that EC2 would no longer list an
            # instance that ran and ended: it may have run, so it is charged, not released.
            found = [self._unlisted(record)]
        if not found:
            log.info("pod %s never had an instance; giving its hold back", record.pod)
            self.admission.release(uid)
            self._settled.add(uid)
            return
        instance = max(found, key=lambda i: i.launch_time)
        if instance.live:
            return  # it is being ended; the state change brings the pod back here

        ended = self._end_of(uid, instance)
        annotations = (pod or {}).get("metadata", {}).get("annotations") or {}
        annotated = annotations.get(tags.PRICE_ANNOTATION)
        price = Decimal(annotated) if annotated else None
        settled = self._settle_ended(uid, instance, ended, price)
        if settled is None or settled.cost_usd is None or pod is None:
            return
        self._show_cost(pod, instance, settled, ended)

    def held_pods(self) -> list[PodEntry]:
        """The pods whose hold is open (see :meth:`Admission.open_holds`)."""
        return [] if self.admission is None else self.admission.open_holds()

    def settle_instance(self, uid: str, instance: Instance) -> PodRecord | None:
        """Settle the ledger record of pod ``uid`` from its ``instance``, without the pod.

        For an instance whose pod object is gone: it is billed at the price noted at its
        launch by this process, else at the price held. Returns the settled record; None
        when there is nothing to settle (no budget, no hold, settled already) or nothing
        yet (the instance is still live: call again once EC2 has it shutting down).
        """
        if instance.tags.get(tags.POD_UID) != uid:
            raise ValueError(f"{instance.instance_id} is not the instance of pod {uid}")
        if instance.live or self._held_record(uid) is None:
            return None
        return self._settle_ended(uid, instance, self._end_of(uid, instance), None)

    def _held_record(self, uid: str) -> PodRecord | None:
        """The pod's record while it holds; None (and never asked again) once it does not."""
        if self.admission is None or uid in self._settled:
            return None
        record = self.admission.ledger.find(uid)
        if record is None or record.state is not HoldState.HELD:
            self._settled.add(uid)
            return None
        return record

    def _end_of(self, uid: str, instance: Instance) -> datetime:
        return instance.ended_at or self._end_of_unlisted(uid)

    def _end_of_unlisted(self, uid: str) -> datetime:
        return self._ended_seen.get(uid) or self.clock()

    def _unlisted(self, record: PodRecord) -> Instance:
        """The instance of a record whose instance EC2 no longer lists.

        EC2 lists a terminated instance for about an hour only; a runtime down longer
        knows its launch from the record (else takes the hold's time), and its end no
        later than the hold's bound (the bootstrap powers it off by then), which
        over-counts rather than under.
        """
        bound_end = record.held_at + timedelta(seconds=record.bound_seconds)
        ended = min(self._end_of_unlisted(record.pod_uid), bound_end)
        log.warning(
            "pod %s: EC2 no longer lists %s; settling it as ended at %s, the latest its hold "
            "allowed",
            record.pod,
            record.instance_id or "its instance",
            pod_status.timestamp(ended),
        )
        return Instance(
            instance_id=record.instance_id or UNLISTED_INSTANCE,
            instance_type=record.instance_type,
            state="terminated",
            availability_zone="",
            launch_time=record.launched_at or record.held_at,
            tags={tags.POD_UID: record.pod_uid},
            spot=record.market == "spot",
            capacity_block=record.market == "capacity-block",
            ended_at=ended,
        )

    def _settle_ended(
        self, uid: str, instance: Instance, ended: datetime, annotated_price: Decimal | None
    ) -> PodRecord | None:
        assert self.admission is not None
        price = self.admission.price_of(uid) or annotated_price
        settled = self.admission.settle(uid, instance, ended, price)
        self._settled.add(uid)
        self._ended_seen.pop(uid, None)
        return settled

    def _show_cost(self, pod: Pod, instance: Instance, settled: PodRecord, ended: datetime) -> None:
        assert settled.cost_usd is not None
        rate = settled.settled_usd_per_hour or settled.usd_per_hour
        ran_seconds = int(seconds(ended - instance.launch_time))
        ran = duration(ran_seconds)
        if ran_seconds < MINIMUM_BILLED_SECONDS and settled.market != "capacity-block":
            ran += f" (billed {duration(MINIMUM_BILLED_SECONDS)}, EC2's minimum)"
        self.writer.annotate(
            pod,
            {
                tags.COST_ANNOTATION: str(settled.cost_usd),
                tags.COST_AS_OF_ANNOTATION: pod_status.timestamp(ended),
            },
        )
        price = f"at {hourly_rate(rate)}"
        if settled.market == "capacity-block":
            price = "in a capacity block, paid for when it was bought"
        self.events.normal(
            pod,
            "Cost",
            f"{instance.instance_id} ran {ran} {price}: cost {cost_words(settled.cost_usd)}",
        )
