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

This module decides among those paths, ends pods, and follows a pod with its
instance (reports, a lost instance, the deadline, a silent agent). The launch
paths are :mod:`orca.pod_launch`'s; money is :mod:`orca.pod_spend`'s: the pod's
bound cost is held before the launch intent is written (a pod that does not fit
waits or fails, and nothing is launched), the instance is noted after the launch,
and once the instance is gone the ledger settles what it cost and the pod says so
(or the hold is given back when no instance ever ran). Every write to a pod goes
through one :class:`orca.pod_writer.PodWriter`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from orca import status as pod_status
from orca import tags
from orca.admission import Admission
from orca.aws.bundles import BundleStore
from orca.aws.ec2 import Ec2
from orca.aws.model import Instance
from orca.aws.queue import StatusQueue
from orca.bootstrap import DEADLINE_GRACE
from orca.catalog import Catalog
from orca.kube.events import EventRecorder, EventType
from orca.kube.pods import PodApi
from orca.launching import Launcher
from orca.messages import StatusReport
from orca.metrics import Metrics
from orca.observed import Observed, Pod
from orca.pod_launch import PodLaunch, describe_instance
from orca.pod_spend import PodSpend
from orca.pod_writer import PodWriter
from orca.settings import Settings
from orca.status import verified_phase
from orca.workqueue import WorkQueue

log = logging.getLogger(__name__)

TERMINAL_PHASES = ("Succeeded", "Failed")
# An agent sends its final report just before it powers off; the report may reach
# the queue poller after the instance listing shows the instance gone.
FINAL_REPORT_GRACE = timedelta(seconds=30)


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
        self.reports = reports
        self.queue = queue
        self.clock = clock
        self.metrics = metrics or Metrics(settings.department)
        self.writer = PodWriter(pods, observed, events, clock)
        self.spend = PodSpend(admission, ec2, self.writer, events, queue, clock)
        self.launch = PodLaunch(
            settings,
            observed,
            pods,
            self.writer,
            events,
            ec2,
            bundles,
            launcher,
            catalog,
            queue,
            self.spend,
            self.metrics,
            clock,
        )
        self._lost_since: dict[str, datetime] = {}

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
        launched = tags.INSTANCE_ID_ANNOTATION in annotations
        # A pod told to wait (no capacity, no budget yet, a missing Secret) is tried again
        # when its wait is over, not each time its own writes or a resync bring it back;
        # an instance of it already running is still adopted at once.
        if not launched and not live and self.queue.deferred(uid):
            return
        if tags.LAUNCH_ATTEMPT_ANNOTATION not in annotations:
            self.launch.start(pod)
        elif not launched:
            self.launch.resume(pod, live)
        else:
            self._follow(pod, annotations[tags.INSTANCE_ID_ANNOTATION])

    # The end of a pod.

    def _pod_gone(self, uid: str, live: list[Instance]) -> None:
        if live:
            ids = [i.instance_id for i in live]
            log.info("pod %s is gone; terminating %s", uid, ", ".join(ids))
            self._terminate(live)
        self.spend.settle(uid, None)
        self.launch.delete_bundle(uid)
        self.events.forget(uid)
        self._lost_since.pop(uid, None)

    def _pod_deleting(self, pod: Pod, live: list[Instance]) -> None:
        if live:
            self._terminate(live)
            for instance in live:
                self.events.normal(
                    pod, "Terminating", f"Terminating {instance.instance_id}: the pod is deleted"
                )
        self.spend.settle(pod["metadata"]["uid"], pod)
        self.launch.delete_bundle(pod["metadata"]["uid"])
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
        self.spend.settle(uid, pod)
        self.launch.delete_bundle(uid)
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
        self.writer.set_status(pod, late)
        self.writer.annotate(pod, {tags.REPORT_SEQUENCE_ANNOTATION: str(report.sequence)})

    def _terminate(self, instances: list[Instance]) -> None:
        self.ec2.terminate([i.instance_id for i in instances])
        now = self.clock()
        for instance in instances:
            self.observed.remember_instance(replace(instance, state="shutting-down"))
            self.spend.saw_ended(instance.tags.get(tags.POD_UID, ""), now)

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
            self.spend.saw_ended(uid, first_seen)
            self._instance_lost(pod, instance_id, instance)
            return
        # The agent stops the pod at its deadline; the runtime steps in if it has not.
        deadline = (pod["metadata"].get("annotations") or {}).get(tags.DEADLINE_ANNOTATION)
        if deadline and self.clock() > pod_status.parse_timestamp(deadline) + DEADLINE_GRACE:
            message = f"The pod passed its deadline {deadline}; terminating {instance_id}"
            self.writer.fail(pod, "DeadlineExceeded", message)
            self._terminate([instance])
            return

        if self.spend.follow(pod, instance):
            self._terminate([instance])
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
            self.writer.fail(pod, "AgentNotReporting", message)
            self._terminate([instance])

    def _apply_report(self, pod: Pod, report: Any, instance: Instance | None) -> None:
        annotations = pod["metadata"].get("annotations") or {}
        applied = int(annotations.get(tags.REPORT_SEQUENCE_ANNOTATION, "-1"))
        if report.sequence <= applied:
            return
        described = describe_instance(instance) if instance else report.instance_id
        before = (pod.get("status") or {}).get("phase")
        new = pod_status.reported_status(pod, report, described, self.clock())
        self._container_events(pod, new)
        # The agent ended the pod itself (a spot notice, a silent runtime, its deadline):
        # its reason is also the pod's Warning Event, as when the runtime ends a pod.
        if new["phase"] == "Failed" and before != "Failed" and report.reason:
            self.events.warning(pod, report.reason, report.message or report.reason)
        self.writer.set_status(pod, new)
        pod = self.writer.annotate(pod, {tags.REPORT_SEQUENCE_ANNOTATION: str(report.sequence)})
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
        self.writer.fail(pod, reason, message)
