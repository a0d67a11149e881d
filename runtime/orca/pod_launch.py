"""The start of a pod: from its spec to an instance recorded on it, exactly once.

:meth:`PodLaunch.start` is for a pod without a launch intent: its contract is checked
(a pod that breaks it fails, each problem a Warning Event), its bundle is built, its
bound cost is held (:mod:`orca.pod_spend`), and only then is the intent written on the
pod (attempt, client token, deadline) and RunInstances called (:mod:`orca.launching`).
The bundle is stored after the launch, readable by that instance alone, and the
instance id recorded on the pod ends the launch.

:meth:`PodLaunch.resume` is for a pod with an intent but no instance id (a runtime
restarted mid-launch, or a retry): the instance tagged with the pod's UID is adopted
if there is one, else the launch is repeated with the same token.

Refusals by kind: no capacity in a zone tries the next zone with a new attempt (and
token), then the pod's next fallback type in every zone (:meth:`LaunchSpec.for_attempt`),
and once every type has been refused in every zone the pod waits; no quota waits; a bad
reservation annotation or a request EC2 refuses fails the pod and gives its hold back.
A reference the bundle needs (a ConfigMap, a Secret, an image pull secret) that is
missing or unusable leaves the pod waiting, and it is tried again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from orca import capacity_reservations, tags
from orca import status as pod_status
from orca.aws.bundles import BundleStore
from orca.aws.ec2 import Ec2
from orca.aws.errors import AuthError, BadRequestError, CapacityError, NotFoundError, QuotaError
from orca.aws.model import Instance
from orca.bundle import MissingReference, PodBundle, build_bundle
from orca.catalog import Catalog
from orca.contract import ContractError, LaunchSpec, resolve_launch
from orca.kube.events import EventRecorder
from orca.kube.pods import PodApi
from orca.launching import Launcher, client_token
from orca.metrics import Metrics
from orca.observed import Observed, Pod
from orca.pod_spend import PodSpend
from orca.pod_writer import PodWriter
from orca.registry_auth import InvalidPullSecret
from orca.settings import Settings
from orca.workqueue import WorkQueue

log = logging.getLogger(__name__)

MISSING_REFERENCE_RETRY_SECONDS = 10.0
QUOTA_RETRY_SECONDS = 300.0
# A pod waiting for its capacity block to start looks again at least this often.
CAPACITY_BLOCK_RECHECK_SECONDS = 300.0


def describe_instance(instance: Instance) -> str:
    """``i-0abc m7i.large spot in us-east-1a``, and its capacity reservation if any."""
    described = (
        f"{instance.instance_id} {instance.instance_type} {instance.market} in "
        f"{instance.availability_zone}"
    )
    if instance.capacity_reservation_id:
        kind = "capacity block" if instance.capacity_block else "capacity reservation"
        described += f" ({kind} {instance.capacity_reservation_id})"
    return described


class PodLaunch:
    def __init__(
        self,
        settings: Settings,
        observed: Observed,
        pods: PodApi,
        writer: PodWriter,
        events: EventRecorder,
        ec2: Ec2,
        bundles: BundleStore,
        launcher: Launcher,
        catalog: Callable[[], Catalog],
        queue: WorkQueue,
        spend: PodSpend,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.observed = observed
        self.pods = pods
        self.writer = writer
        self.events = events
        self.ec2 = ec2
        self.bundles = bundles
        self.launcher = launcher
        self.catalog = catalog
        self.queue = queue
        self.spend = spend
        self.metrics = metrics
        self.clock = clock
        self._bundles_deleted: set[str] = set()

    def start(self, pod: Pod) -> None:
        """A pod without a launch intent: check it, hold its cost, write the intent, launch."""
        spec = self._resolve(pod)
        if spec is None:
            return
        # Whole seconds: the deadline is recorded on the pod and must give the same
        # user data when a restarted runtime repeats the launch.
        deadline = (self.clock() + spec.lifetime).replace(microsecond=0)
        self._launch_attempt(pod, spec, attempt=1, deadline=deadline)

    def resume(self, pod: Pod, live: list[Instance]) -> None:
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
        deadline = pod_status.parse_timestamp(annotations[tags.DEADLINE_ANNOTATION])
        self._launch_attempt(pod, spec, attempt=attempt, deadline=deadline, intent_written=True)

    def delete_bundle(self, uid: str) -> None:
        """The pod ended: its bundle goes (asked of S3 once per process)."""
        if uid not in self._bundles_deleted:
            self.bundles.delete(uid)
            self._bundles_deleted.add(uid)

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
            self.writer.set_status(
                pod, pod_status.failed_status(pod, first.reason, message, self.clock())
            )
            return None

    def _store_bundle_again(self, pod: Pod, instance: Instance) -> bool:
        spec = self._resolve(pod)
        if spec is None:
            return False
        annotations = pod["metadata"]["annotations"]
        deadline = pod_status.parse_timestamp(annotations[tags.DEADLINE_ANNOTATION])
        attempt = int(annotations[tags.LAUNCH_ATTEMPT_ANNOTATION])
        spec = spec.for_attempt(attempt, self._zone_count(spec))
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
        # The attempt launches the type whose turn it is: the pod's own or a fallback.
        choices = spec
        spec = choices.for_attempt(attempt, self._zone_count(choices))
        if spec.market == "capacity-block":
            stop_by = self._capacity_block_stop(pod, spec)
            if stop_by is None:
                return
            if not intent_written and stop_by < deadline:
                block = spec.reservation.reservation_id
                deadline = stop_by
                spec = dataclasses.replace(
                    spec,
                    lifetime=stop_by - self.clock(),
                    lifetime_source=f"before EC2 ends the instances of capacity block {block}",
                )
        bundle = self._build_bundle(pod, spec, deadline)
        if bundle is None:
            return
        held = ""
        if self.spend.budgeted:
            admitted = self.spend.admit(pod, spec, deadline)
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
            pod = self.writer.annotate(
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
        self.writer.set_status(
            pod, pod_status.pending_status(pod, "Launching", f"Launching {what}", self.clock())
        )

        try:
            instance = self.launcher.launch(plan)
        except CapacityError as e:
            self.metrics.launch_failures(kind="capacity").inc()
            zone = plan.subnet.availability_zone
            self._capacity_shortfall(pod, choices, attempt, zone, e)
            return
        except QuotaError as e:
            self.metrics.launch_failures(kind="quota").inc()
            message = (
                f"AWS refused {spec.instance_type.name} for lack of quota: {e}. The pod waits; "
                "ask the account owner to raise the EC2 service quota for this instance family"
            )
            self.writer.wait(pod, "QuotaExceeded", message)
            self.queue.defer(pod["metadata"]["uid"], QUOTA_RETRY_SECONDS)
            return
        except (NotFoundError, AuthError) as e:
            # Unless the pod's own reservation id is at fault, the envelope is broken, which
            # the worker's retries and logs report.
            rejection = capacity_reservations.refusal(spec, self.settings, e)
            if rejection is None:
                raise
            self.metrics.launch_failures(kind="reservation").inc()
            self.spend.release(pod["metadata"]["uid"])
            self.writer.fail(pod, "InvalidAnnotation", rejection.message())
            return
        except BadRequestError as e:
            self.metrics.launch_failures(kind="request").inc()
            self.spend.release(pod["metadata"]["uid"])
            self.writer.fail(pod, "LaunchFailed", f"EC2 refused the launch: {e}")
            return

        self.metrics.launches(instance_type=spec.instance_type.name, market=spec.market).inc()
        self.observed.remember_instance(instance)
        self._store_bundle(bundle, instance)
        self._record_instance(pod, instance)

    def _capacity_block_stop(self, pod: Pod, spec: LaunchSpec) -> datetime | None:
        """When a capacity-block pod must stop by, or None when it cannot launch now (it
        waits for its block to start, or fails)."""
        uid = pod["metadata"]["uid"]
        block_id = spec.reservation.reservation_id
        assert block_id is not None
        try:
            block = self.ec2.describe_capacity_reservation(block_id)
        except (NotFoundError, AuthError) as e:
            rejection = capacity_reservations.refusal(spec, self.settings, e)
            if rejection is None:
                raise
            self.spend.release(uid)
            self.writer.fail(pod, rejection.reason, rejection.message())
            return None
        window = capacity_reservations.block_window(spec, block, self.clock())
        if window.rejection is not None:
            self.spend.release(uid)
            self.writer.fail(pod, window.rejection.reason, window.rejection.message())
            return None
        if window.starts is not None:
            wait = (window.starts - self.clock()).total_seconds()
            message = (
                f"capacity block {block_id} starts at {pod_status.timestamp(window.starts)}; "
                "the pod waits and launches into it then"
            )
            self.writer.wait(pod, "WaitingForCapacityBlock", message)
            self.queue.defer(uid, min(max(wait, 5.0), CAPACITY_BLOCK_RECHECK_SECONDS))
            return None
        return window.stop_by

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
            self.writer.wait(pod, "CreateContainerConfigError", message)
            self.queue.defer(pod["metadata"]["uid"], MISSING_REFERENCE_RETRY_SECONDS)
            return None

    def _store_bundle(self, bundle: PodBundle, instance: Instance) -> None:
        """Store the bundle where only ``instance`` can read it (see orca.aws.bundles)."""
        if instance.arn is None:
            raise ValueError(f"EC2 named no account for {instance.instance_id}; it has no ARN")
        self.bundles.put(bundle, instance.arn)
        self._bundles_deleted.discard(bundle.pod_uid)

    def _zone_count(self, spec: LaunchSpec) -> int:
        """How many zones an attempt walks before the pod waits or falls back."""
        return 1 if spec.availability_zone else max(1, len(self.launcher.zones))

    def _capacity_shortfall(
        self, pod: Pod, choices: LaunchSpec, attempt: int, zone: str, error: Exception
    ) -> None:
        """No capacity in this zone: the next attempt (a new token) tries the next zone, then
        the next fallback type; when every type has been refused in every zone, the pod
        waits and starts again from its own type."""
        uid = pod["metadata"]["uid"]
        zones = self._zone_count(choices)
        tried = choices.for_attempt(attempt, zones)
        next_attempt = attempt + 1
        pod = self.writer.annotate(
            pod,
            {
                tags.LAUNCH_ATTEMPT_ANNOTATION: str(next_attempt),
                tags.CLIENT_TOKEN_ANNOTATION: client_token(uid, next_attempt),
            },
        )
        if attempt % zones:
            shortage = capacity_reservations.shortage(tried, self.settings, zone)
            self.events.warning(
                pod, "InsufficientCapacity", f"{shortage}: {error}; trying the next zone"
            )
            self.queue.add(uid)
            return
        where = choices.availability_zone or "any of " + ", ".join(self.launcher.zones)
        if choices.choice_of(next_attempt, zones):
            fallback = choices.for_attempt(next_attempt, zones).instance_type.name
            shortage = capacity_reservations.shortage(tried, self.settings, where)
            self.events.warning(
                pod,
                "InsufficientCapacity",
                f"{shortage}: {error}; trying the fallback instance type {fallback}",
            )
            self.queue.add(uid)
            return
        if choices.choices > 1:
            names = ", ".join(choices.instance_type_names)
            shortage = f"No {choices.market} capacity for any of {names} in {where}"
        else:
            shortage = capacity_reservations.shortage(choices, self.settings, where)
        message = (
            f"{shortage}; the pod waits and ORCA tries again every "
            f"{self.settings.capacity_retry_seconds:.0f} s"
        )
        self.writer.wait(pod, "WaitingForCapacity", message)
        self.queue.defer(uid, self.settings.capacity_retry_seconds)

    def _record_instance(self, pod: Pod, instance: Instance) -> None:
        annotations: dict[str, str | None] = {tags.INSTANCE_ID_ANNOTATION: instance.instance_id}
        annotations.update(self.spend.launched(pod, instance))
        pod = self.writer.annotate(pod, annotations)
        self.events.normal(pod, "Launched", f"Launched {describe_instance(instance)}")
        self.writer.set_status(
            pod,
            pod_status.pending_status(
                pod, "InstanceBooting", f"{describe_instance(instance)} is booting", self.clock()
            ),
        )
