"""What to do for one pod, decided from what has been observed.

:meth:`Reconciler.reconcile` is called with a pod UID whenever something about
that pod may have changed, from any number of worker threads (never two for
the same UID). It is idempotent: called twice with nothing new, it changes
nothing. The paths, in the order they are checked:

- the pod was seen deleted: terminate its instances, delete its bundle (an
  instance whose pod this process never saw is left to the garbage collector);
- the pod is being deleted: terminate, then release the pod object;
- the pod is Succeeded or Failed: make sure its instance is terminated;
- the pod has no launch intent: check its contract, write the intent, launch;
- the pod has an intent but no instance id: adopt the tagged instance or
  repeat the launch with the same token (exactly once across restarts);
- the pod has an instance: mirror the agent's reports into the pod status.

Money goes through :mod:`orca.admission`: the pod's bound cost is held before the
launch intent is written (a pod that does not fit waits or fails, and nothing is
launched), the instance is noted after the launch, and once the instance is gone the
ledger settles what it cost and the pod says so (or the hold is given back when no
instance ever ran).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from orca import capacity_reservations, tags
from orca import status as pod_status
from orca.admission import Admission, Admitted, Refused, hourly_rate
from orca.aws.bundles import BundleStore
from orca.aws.ec2 import Ec2
from orca.aws.errors import AuthError, BadRequestError, CapacityError, NotFoundError, QuotaError
from orca.aws.model import Instance
from orca.aws.queue import StatusQueue
from orca.bootstrap import DEADLINE_GRACE
from orca.bundle import MissingReference, PodBundle, build_bundle
from orca.catalog import Catalog
from orca.contract import ContractError, LaunchSpec, resolve_launch
from orca.kube.events import EventRecorder, EventType
from orca.kube.pods import PodApi
from orca.launching import Launcher, client_token
from orca.ledger_records import HoldState, cents, cost_usd, duration, seconds, usd
from orca.messages import StatusReport
from orca.metrics import Metrics
from orca.observed import Observed, Pod
from orca.registry_auth import InvalidPullSecret
from orca.settings import Settings
from orca.status import verified_phase
from orca.workqueue import WorkQueue

log = logging.getLogger(__name__)

TERMINAL_PHASES = ("Succeeded", "Failed")
MISSING_REFERENCE_RETRY_SECONDS = 10.0
QUOTA_RETRY_SECONDS = 300.0
# An agent sends its final report just before it powers off; the report may reach
# the queue poller after the instance listing shows the instance gone.
FINAL_REPORT_GRACE = timedelta(seconds=30)
# How often a running pod's accrued cost annotation is brought up to date.
COST_REFRESH = timedelta(minutes=5)
_STATUS_KEYS = (
    "phase",
    "reason",
    "message",
    "conditions",
    "containerStatuses",
    "initContainerStatuses",
    "podIP",
    "hostIP",
)


def _describe(instance: Instance) -> str:
    market = "spot" if instance.spot else "on-demand"
    described = (
        f"{instance.instance_id} {instance.instance_type} {market} in {instance.availability_zone}"
    )
    if instance.capacity_reservation_id:
        described += f" (capacity reservation {instance.capacity_reservation_id})"
    return described


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        observed: Observed,
        pods: PodApi,
        events: EventRecorder,
        ec2: Ec2,
        bundles: BundleStore,
        reports: StatusQueue,
        launcher: Launcher,
        catalog: Callable[[], Catalog],
        queue: WorkQueue,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.settings = settings
        self.observed = observed
        self.pods = pods
        self.events = events
        self.ec2 = ec2
        self.bundles = bundles
        self.reports = reports
        self.launcher = launcher
        self.catalog = catalog
        self.queue = queue
        self.clock = clock
        self.metrics = metrics or Metrics(settings.department)
        self.admission = admission
        self._bundles_deleted: set[str] = set()
        self._lost_since: dict[str, datetime] = {}
        # When this process ended, or first saw gone, each pod's instance: the end time a
        # settle uses when EC2's transition reason names none.
        self._ended_seen: dict[str, datetime] = {}
        self._settled: set[str] = set()

    def reconcile(self, uid: str) -> None:
        pod = self.observed.pod(uid)
        live = [i for i in self.observed.instances(uid) if i.live]
        if pod is None:
            # Instances of pods this process never saw are the garbage collector's: it
            # waits for a minimum age and confirms with the API server before ending them.
            if self.observed.was_deleted(uid):
                self._pod_gone(uid, live)
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleting(pod, live)
            return
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            self._pod_finished(pod, live)
            return

        annotations = pod["metadata"].get("annotations") or {}
        if tags.LAUNCH_ATTEMPT_ANNOTATION not in annotations:
            self._admit_and_launch(pod)
        elif tags.INSTANCE_ID_ANNOTATION not in annotations:
            self._resume_launch(pod, live)
        else:
            self._follow(pod, annotations[tags.INSTANCE_ID_ANNOTATION])

    # The end of a pod.

    def _pod_gone(self, uid: str, live: list[Instance]) -> None:
        if live:
            ids = [i.instance_id for i in live]
            log.info("pod %s is gone; terminating %s", uid, ", ".join(ids))
            self._terminate(live)
        self._settle(uid, None)
        self._delete_bundle(uid)
        self.events.forget(uid)
        self._lost_since.pop(uid, None)

    def _pod_deleting(self, pod: Pod, live: list[Instance]) -> None:
        if live:
            self._terminate(live)
            for instance in live:
                self.events.normal(
                    pod, "Terminating", f"Terminating {instance.instance_id}: the pod is deleted"
                )
        self._settle(pod["metadata"]["uid"], pod)
        self._delete_bundle(pod["metadata"]["uid"])
        # Like a kubelet, release the object once nothing of the pod runs any more.
        self.pods.release(pod)

    def _pod_finished(self, pod: Pod, live: list[Instance]) -> None:
        uid = pod["metadata"]["uid"]
        if live:
            self._terminate(live)
            phase = pod["status"]["phase"]
            for instance in live:
                self.events.normal(
                    pod, "Terminated", f"Terminated {instance.instance_id}: the pod {phase.lower()}"
                )
        self._settle(uid, pod)
        self._delete_bundle(uid)
        pending = self.observed.take_report(uid)
        if pending is not None:
            self._apply_late_report(pod, pending.report)
            self.reports.delete(pending.receipts)
            self.observed.settle_report(uid, pending)

    def _apply_late_report(self, pod: Pod, report: StatusReport) -> None:
        """A report that arrives after the pod finished completes its containers' story.

        The phase of a finished pod never changes again (Kubernetes refuses that), so
        the report may update the containers' final states only.
        """
        annotations = pod["metadata"].get("annotations") or {}
        applied = int(annotations.get(tags.REPORT_SEQUENCE_ANNOTATION, "-1"))
        if report.instance_id != annotations.get(tags.INSTANCE_ID_ANNOTATION):
            return
        if report.sequence <= applied or verified_phase(report) not in TERMINAL_PHASES:
            return
        current = pod["status"]
        late = pod_status.reported_status(pod, report, report.instance_id, self.clock())
        late.update({key: current.get(key) for key in ("phase", "reason", "message")})
        late.pop("conditions", None)
        self._set_status(pod, late)
        self._annotate(pod, {tags.REPORT_SEQUENCE_ANNOTATION: str(report.sequence)})

    def _terminate(self, instances: list[Instance]) -> None:
        self.ec2.terminate([i.instance_id for i in instances])
        now = self.clock()
        for instance in instances:
            self.observed.remember_instance(_with_state(instance, "shutting-down"))
            self._ended_seen.setdefault(instance.tags.get(tags.POD_UID, ""), now)

    def _settle(self, uid: str, pod: Pod | None) -> None:
        """Once the pod's instance is gone: settle what it cost, or give the hold back."""
        if self.admission is None or uid in self._settled:
            return
        record = self.admission.ledger.find(uid)
        if record is None or record.state is not HoldState.HELD:
            self._settled.add(uid)
            return
        if record.instance_id:
            found = self.ec2.get_instances([record.instance_id])
        else:
            # A runtime stopped between the launch and noting it: the tags know the instance.
            found = self.ec2.list_instances({tags.POD_UID: uid}, include_terminated=True)
        if not found:
            log.info("pod %s never had an instance; giving its hold back", record.pod)
            self.admission.release(uid)
            self._settled.add(uid)
            return
        instance = max(found, key=lambda i: i.launch_time)
        if instance.live:
            return  # it is being ended; the state change brings the pod back here
        ended = instance.ended_at or self._ended_seen.get(uid) or self.clock()
        annotated = ((pod or {}).get("metadata", {}).get("annotations") or {}).get(
            tags.PRICE_ANNOTATION
        )
        price = self.admission.price_of(uid) or (Decimal(annotated) if annotated else None)
        settled = self.admission.settle(uid, instance, ended, price)
        self._settled.add(uid)
        self._ended_seen.pop(uid, None)
        if settled is None or settled.cost_usd is None or pod is None:
            return
        rate = settled.settled_usd_per_hour or settled.usd_per_hour
        ran = duration(int(seconds(ended - instance.launch_time)))
        self._annotate(
            pod,
            {
                tags.COST_ANNOTATION: str(settled.cost_usd),
                tags.COST_AS_OF_ANNOTATION: pod_status.timestamp(ended),
            },
        )
        self.events.normal(
            pod,
            "Cost",
            f"{instance.instance_id} ran {ran} at {hourly_rate(rate)}: "
            f"cost {cents(settled.cost_usd)}",
        )

    def _delete_bundle(self, uid: str) -> None:
        if uid not in self._bundles_deleted:
            self.bundles.delete(uid)
            self._bundles_deleted.add(uid)

    # The start of a pod.

    def _resolve(self, pod: Pod) -> LaunchSpec | None:
        try:
            return resolve_launch(pod, self.settings, self.catalog(), self.launcher.zones)
        except ContractError as e:
            self.metrics.rejections.inc()
            for rejection in e.rejections:
                self.events.warning(pod, rejection.reason, rejection.message())
            first = e.rejections[0]
            message = first.message()
            others = len(e.rejections) - 1
            if others:
                problems = "problem" if others == 1 else "problems"
                message += f" (and {others} more {problems}: see the pod's events)"
            self._set_status(
                pod, pod_status.failed_status(pod, first.reason, message, self.clock())
            )
            return None

    def _admit_and_launch(self, pod: Pod) -> None:
        spec = self._resolve(pod)
        if spec is None:
            return
        # Whole seconds: the deadline is recorded on the pod and must give the same
        # user data when a restarted runtime repeats the launch.
        deadline = (self.clock() + spec.lifetime).replace(microsecond=0)
        self._launch_attempt(pod, spec, attempt=1, deadline=deadline)

    def _resume_launch(self, pod: Pod, live: list[Instance]) -> None:
        """An intent without an instance id: a restart mid-launch, or a retry."""
        uid = pod["metadata"]["uid"]
        annotations = pod["metadata"]["annotations"]
        attempt = int(annotations[tags.LAUNCH_ATTEMPT_ANNOTATION])
        # DescribeInstances is eventually consistent and the listing may predate the
        # launch, so ask directly; an instance that already ended is adopted too, so
        # that its report (or its loss) decides the pod rather than a second launch.
        found = live or self.ec2.list_instances({tags.POD_UID: uid}, include_terminated=True)
        found.sort(key=lambda i: (i.tags.get(tags.ATTEMPT) != str(attempt), not i.live))
        if found:
            instance = found[0]
            log.info(
                "adopting %s for pod %s (launch attempt %s)", instance.instance_id, uid, attempt
            )
            self.observed.remember_instance(instance)
            # The launch may have ended before the bundle was stored: its agent waits for it.
            if instance.live and not self._store_bundle_again(pod, instance):
                return
            self._record_instance(pod, instance)
            return
        spec = self._resolve(pod)
        if spec is None:
            return
        deadline = _parse_time(annotations[tags.DEADLINE_ANNOTATION])
        self._launch_attempt(pod, spec, attempt=attempt, deadline=deadline, intent_written=True)

    def _store_bundle_again(self, pod: Pod, instance: Instance) -> bool:
        spec = self._resolve(pod)
        if spec is None:
            return False
        deadline = _parse_time(pod["metadata"]["annotations"][tags.DEADLINE_ANNOTATION])
        bundle = self._build_bundle(pod, spec, deadline)
        if bundle is None:
            return False
        self._store_bundle(bundle, instance)
        return True

    def _launch_attempt(
        self,
        pod: Pod,
        spec: LaunchSpec,
        attempt: int,
        deadline: datetime,
        intent_written: bool = False,
    ) -> None:
        uid = pod["metadata"]["uid"]
        bundle = self._build_bundle(pod, spec, deadline)
        if bundle is None:
            return
        held = ""
        if self.admission is not None:
            admitted = self._admit(pod, spec, deadline)
            if admitted is None:
                return
            held = f" {admitted.describe()}"
            # A hold made before a restart bounds the pod from then: keep its deadline.
            if not intent_written:
                bound_deadline = (admitted.record.held_at + spec.lifetime).replace(microsecond=0)
                if bound_deadline < deadline:
                    deadline = bound_deadline
                    bundle = self._build_bundle(pod, spec, deadline)
                    if bundle is None:
                        return
        plan = self.launcher.plan(pod, spec, attempt, deadline)

        if not intent_written:
            pod = self._annotate(
                pod,
                {
                    tags.LAUNCH_ATTEMPT_ANNOTATION: str(attempt),
                    tags.CLIENT_TOKEN_ANNOTATION: plan.request.client_token,
                    tags.DEADLINE_ANNOTATION: pod_status.timestamp(deadline),
                },
            )
        what = f"{spec.instance_type.name} {spec.market} in {plan.subnet.availability_zone}"
        target = capacity_reservations.target(spec, self.settings)
        if target:
            what += f" into {target}"
        self.events.normal(
            pod,
            "Launching",
            f"Launching {what} (attempt {attempt}){held}; it stops by "
            f"{pod_status.timestamp(deadline)} ({spec.lifetime_source})",
        )
        self._set_status(
            pod, pod_status.pending_status(pod, "Launching", f"Launching {what}", self.clock())
        )

        try:
            instance = self.launcher.launch(plan)
        except CapacityError as e:
            self.metrics.launch_failures(kind="capacity").inc()
            self._capacity_shortfall(pod, spec, attempt, deadline, plan.subnet.availability_zone, e)
            return
        except QuotaError as e:
            self.metrics.launch_failures(kind="quota").inc()
            message = (
                f"AWS refused {spec.instance_type.name} for lack of quota: {e}. The pod waits; "
                "ask the account owner to raise the EC2 service quota for this instance family"
            )
            self.events.warning(pod, "QuotaExceeded", message)
            self._set_status(
                pod, pod_status.pending_status(pod, "QuotaExceeded", message, self.clock())
            )
            self.queue.add_after(uid, QUOTA_RETRY_SECONDS)
            return
        except (NotFoundError, AuthError) as e:
            # Unless the pod's own reservation id is at fault, the envelope is broken, which
            # the worker's retries and logs report.
            rejection = capacity_reservations.refusal(spec, self.settings, e)
            if rejection is None:
                raise
            self.metrics.launch_failures(kind="reservation").inc()
            self._release(uid)
            message = rejection.message()
            self.events.warning(pod, "InvalidAnnotation", message)
            self._set_status(
                pod, pod_status.failed_status(pod, "InvalidAnnotation", message, self.clock())
            )
            return
        except BadRequestError as e:
            self.metrics.launch_failures(kind="request").inc()
            self._release(uid)
            message = f"EC2 refused the launch: {e}"
            self.events.warning(pod, "LaunchFailed", message)
            self._set_status(
                pod, pod_status.failed_status(pod, "LaunchFailed", message, self.clock())
            )
            return

        self.metrics.launches(instance_type=spec.instance_type.name, market=spec.market).inc()
        self.observed.remember_instance(instance)
        self._store_bundle(bundle, instance)
        self._record_instance(pod, instance)

    def _admit(self, pod: Pod, spec: LaunchSpec, deadline: datetime) -> Admitted | None:
        """Hold the pod's bound cost; None when it does not fit (it waits or fails)."""
        assert self.admission is not None
        uid = pod["metadata"]["uid"]
        # The runtime ends an instance DEADLINE_GRACE after its deadline at the latest.
        bound = deadline + DEADLINE_GRACE - self.clock()
        result = self.admission.admit(pod, spec, bound)
        if isinstance(result, Refused):
            self.events.warning(pod, result.reason, result.message)
            if result.fail:
                status = pod_status.failed_status(pod, result.reason, result.message, self.clock())
            else:
                status = pod_status.pending_status(pod, result.reason, result.message, self.clock())
                self.queue.add_after(uid, result.retry_seconds)
            self._set_status(pod, status)
            return None
        if result.ran_already:
            log.warning(
                "pod %s was settled in the ledger already (it ran as %s); not launching again",
                result.record.pod,
                result.record.instance_id,
            )
            return None
        return result

    def _release(self, uid: str) -> None:
        if self.admission is not None:
            self.admission.release(uid)

    def _build_bundle(self, pod: Pod, spec: LaunchSpec, deadline: datetime) -> PodBundle | None:
        """The pod's bundle, or None while a reference it needs is missing (the pod waits)."""
        try:
            return build_bundle(
                pod,
                self.pods,
                deadline=deadline,
                now=self.clock(),
                allocatable={
                    "cpu": Decimal(spec.instance_type.vcpus),
                    "memory": Decimal(spec.instance_type.memory_mib * 2**20),
                },
                warn=lambda message: self.events.warning(pod, "TokenLifetime", message),
            )
        except (MissingReference, InvalidPullSecret) as e:
            message = f"{e}; the pod waits until it exists"
            self.events.warning(pod, "CreateContainerConfigError", message)
            self._set_status(
                pod,
                pod_status.pending_status(pod, "CreateContainerConfigError", message, self.clock()),
            )
            self.queue.add_after(pod["metadata"]["uid"], MISSING_REFERENCE_RETRY_SECONDS)
            return None

    def _store_bundle(self, bundle: PodBundle, instance: Instance) -> None:
        """Store the bundle where only ``instance`` can read it (see orca.aws.bundles)."""
        if instance.arn is None:
            raise ValueError(f"EC2 named no account for {instance.instance_id}; it has no ARN")
        self.bundles.put(bundle, instance.arn)
        self._bundles_deleted.discard(bundle.pod_uid)

    def _capacity_shortfall(
        self,
        pod: Pod,
        spec: LaunchSpec,
        attempt: int,
        deadline: datetime,
        zone: str,
        error: Exception,
    ) -> None:
        """No capacity in this zone: the next attempt tries the next zone (a new token)."""
        uid = pod["metadata"]["uid"]
        zones = 1 if spec.availability_zone else max(1, len(self.launcher.zones))
        next_attempt = attempt + 1
        pod = self._annotate(
            pod,
            {
                tags.LAUNCH_ATTEMPT_ANNOTATION: str(next_attempt),
                tags.CLIENT_TOKEN_ANNOTATION: client_token(uid, next_attempt),
            },
        )
        if attempt % zones:
            shortage = capacity_reservations.shortage(spec, self.settings, zone)
            self.events.warning(
                pod, "InsufficientCapacity", f"{shortage}: {error}; trying the next zone"
            )
            self.queue.add(uid)
            return
        where = spec.availability_zone or "any of " + ", ".join(self.launcher.zones)
        message = (
            f"{capacity_reservations.shortage(spec, self.settings, where)}; the pod waits and "
            f"ORCA tries again every {self.settings.capacity_retry_seconds:.0f} s"
        )
        self.events.warning(pod, "WaitingForCapacity", message)
        self._set_status(
            pod, pod_status.pending_status(pod, "WaitingForCapacity", message, self.clock())
        )
        self.queue.add_after(uid, self.settings.capacity_retry_seconds)

    def _record_instance(self, pod: Pod, instance: Instance) -> None:
        price = self.admission.launched(pod, instance) if self.admission else None
        annotations: dict[str, str | None] = {tags.INSTANCE_ID_ANNOTATION: instance.instance_id}
        # The billed price goes on the pod; the Launching Event named the held one.
        if price is not None:
            annotations[tags.PRICE_ANNOTATION] = str(usd(price))
        pod = self._annotate(pod, annotations)
        self.events.normal(pod, "Launched", f"Launched {_describe(instance)}")
        self._set_status(
            pod,
            pod_status.pending_status(
                pod, "InstanceBooting", f"{_describe(instance)} is booting", self.clock()
            ),
        )

    # A pod with its instance.

    def _follow(self, pod: Pod, instance_id: str) -> None:
        uid = pod["metadata"]["uid"]
        instance = next(
            (i for i in self.observed.instances(uid) if i.instance_id == instance_id), None
        )
        if instance is None:
            found = self.ec2.get_instances([instance_id])
            instance = found[0] if found else None
            if instance is not None:
                self.observed.remember_instance(instance)

        pending = self.observed.take_report(uid)
        if pending is not None:
            # A report from another instance of the pod (an earlier attempt) is stale.
            current = pending.report.instance_id == instance_id
            if current:
                self._apply_report(pod, pending.report, instance)
            self.reports.delete(pending.receipts)
            self.observed.settle_report(uid, pending)
            if current:
                return

        if instance is None or not instance.live:
            first_seen = self._lost_since.setdefault(uid, self.clock())
            if self.clock() - first_seen < FINAL_REPORT_GRACE:
                self.queue.add_after(uid, 2.0)
                return
            self._lost_since.pop(uid, None)
            self._ended_seen.setdefault(uid, first_seen)
            self._instance_lost(pod, instance_id, instance)
            return
        # The agent stops the pod at its deadline; the runtime steps in if it has not.
        deadline = (pod["metadata"].get("annotations") or {}).get(tags.DEADLINE_ANNOTATION)
        if deadline and self.clock() > _parse_time(deadline) + DEADLINE_GRACE:
            message = f"The pod passed its deadline {deadline}; terminating {instance_id}"
            self.events.warning(pod, "DeadlineExceeded", message)
            self._set_status(
                pod, pod_status.failed_status(pod, "DeadlineExceeded", message, self.clock())
            )
            self._terminate([instance])
            return

        if self.admission is not None and self._follow_budget(pod, instance):
            return

        # An agent that never reports (a bootstrap that failed, an AMI without Docker)
        # would leave an instance billing until the deadline; end it much sooner.
        annotations = pod["metadata"].get("annotations") or {}
        silent_for = self.clock() - instance.launch_time
        limit = timedelta(seconds=self.settings.agent_report_timeout_seconds)
        if tags.REPORT_SEQUENCE_ANNOTATION not in annotations and silent_for > limit:
            message = (
                f"The ORCA agent on {instance_id} has not reported in "
                f"{limit.total_seconds():.0f} s since launch; terminating the instance. "
                "Check its console output "
                "(aws ec2 get-console-output) and the launch template's AMI"
            )
            self.events.warning(pod, "AgentNotReporting", message)
            self._set_status(
                pod, pod_status.failed_status(pod, "AgentNotReporting", message, self.clock())
            )
            self._terminate([instance])

    def _follow_budget(self, pod: Pod, instance: Instance) -> bool:
        """Keep the pod's cost current and apply an over-budget action; True if it ended."""
        assert self.admission is not None
        uid = pod["metadata"]["uid"]
        self.admission.following(pod, instance)
        verdict = self.admission.verdict(uid)
        if verdict is not None:
            kind, message = verdict
            if kind == "stop":
                message += f"; terminating {instance.instance_id}"
                log.warning("%s", message, extra={"pod_uid": uid})
                self.events.warning(pod, "BudgetExceeded", message)
                self._set_status(
                    pod, pod_status.failed_status(pod, "BudgetExceeded", message, self.clock())
                )
                self._terminate([instance])
                return True
            log.info("%s: %s", uid, message, extra={"pod_uid": uid})
            self.events.warning(pod, "BudgetExceeded", message)

        price = self.admission.price_of(uid)
        annotations = pod["metadata"].get("annotations") or {}
        as_of = annotations.get(tags.COST_AS_OF_ANNOTATION)
        now = self.clock()
        if price is not None and (as_of is None or now - _parse_time(as_of) >= COST_REFRESH):
            ran = max(seconds(now - instance.launch_time), Decimal(60))
            self._annotate(
                pod,
                {
                    tags.COST_ANNOTATION: str(cost_usd(price, ran)),
                    tags.COST_AS_OF_ANNOTATION: pod_status.timestamp(now),
                },
            )
        return False

    def _apply_report(self, pod: Pod, report: Any, instance: Instance | None) -> None:
        annotations = pod["metadata"].get("annotations") or {}
        applied = int(annotations.get(tags.REPORT_SEQUENCE_ANNOTATION, "-1"))
        if report.sequence <= applied:
            return
        described = _describe(instance) if instance else report.instance_id
        before = (pod.get("status") or {}).get("phase")
        new = pod_status.reported_status(pod, report, described, self.clock())
        self._container_events(pod, new)
        # The agent ended the pod itself (a spot notice, a silent runtime, its deadline):
        # its reason is also the pod's Warning Event, as when the runtime ends a pod.
        if new["phase"] == "Failed" and before != "Failed" and report.reason:
            self.events.warning(pod, report.reason, report.message or report.reason)
        self._set_status(pod, new)
        pod = self._annotate(pod, {tags.REPORT_SEQUENCE_ANNOTATION: str(report.sequence)})
        if new["phase"] in TERMINAL_PHASES:
            self.observed.remember_pod({**pod, "status": {**pod.get("status", {}), **new}})
            self.queue.add(pod["metadata"]["uid"])

    def _container_events(self, pod: Pod, new: dict[str, Any]) -> None:
        before = {
            c["name"]: c.get("state") or {}
            for c in (pod.get("status") or {}).get("initContainerStatuses", [])
            + (pod.get("status") or {}).get("containerStatuses", [])
        }
        for container in new.get("initContainerStatuses", []) + new.get("containerStatuses", []):
            name, state = container["name"], container["state"]
            old = before.get(name, {})
            # The agent reports its newest snapshot only, so a short container may be seen
            # terminated without ever being seen running; it did start, and says so.
            started_unseen = (
                "terminated" in state
                and not {"running", "terminated"} & old.keys()
                and bool(state["terminated"].get("startedAt"))
            )
            if ("running" in state and "running" not in old) or started_unseen:
                self.events.normal(pod, "Started", f"Started container {name}")
            if "terminated" in state and "terminated" not in old:
                done = state["terminated"]
                kind: EventType = "Normal" if done.get("exitCode") == 0 else "Warning"
                self.events.record(
                    pod,
                    kind,
                    "Completed" if kind == "Normal" else "ContainerFailed",
                    f"Container {name} exited with code {done.get('exitCode')} "
                    f"({done.get('reason')})",
                )

    def _instance_lost(self, pod: Pod, instance_id: str, instance: Instance | None) -> None:
        why = instance.state_reason if instance and instance.state_reason else "no reason given"
        if instance is not None and instance.spot and "Spot" in why:
            reason, message = "SpotInterrupted", f"EC2 reclaimed spot instance {instance_id}: {why}"
        else:
            state = instance.state if instance else "gone"
            reason = "InstanceTerminated"
            message = f"Instance {instance_id} is {state} before the pod finished: {why}"
        self.events.warning(pod, reason, message)
        self._set_status(pod, pod_status.failed_status(pod, reason, message, self.clock()))

    # Writing to the pod.

    def _annotate(self, pod: Pod, annotations: dict[str, str | None]) -> Pod:
        updated = self.pods.annotate(pod, annotations)
        self.observed.remember_pod(updated)
        return updated

    def _set_status(self, pod: Pod, new: dict[str, Any]) -> None:
        current = pod.get("status") or {}
        if all(current.get(key) == new.get(key) for key in _STATUS_KEYS if key in new):
            return
        updated = self.pods.patch_status(pod, new)
        self.observed.remember_pod(updated)
        pod["status"] = updated.get("status", new)


def _with_state(instance: Instance, state: str) -> Instance:
    return replace(instance, state=state)
