"""The reconciler's decisions, against stateful fakes of EC2 and the pod API."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orca import tags
from orca.admission import Admission
from orca.aws.errors import AuthError
from orca.catalog import Catalog
from orca.launching import Launcher
from orca.messages import ContainerReport, StatusReport
from orca.observed import Observed
from orca.reconciler import FINAL_REPORT_GRACE, Reconciler
from orca.workqueue import WorkQueue
from tests.fakes.ec2 import DEFAULT_SUBNETS, FakeEc2
from tests.unit.helpers import pod, settings

NOW = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)


class FakePods:
    """The pod API: keeps the pods it is given and applies annotations and status."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.released: list[str] = []
        self.version = 100

    def add(self, manifest: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(manifest)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.pods[stored["metadata"]["uid"]] = stored
        return copy.deepcopy(stored)

    def _bump(self, uid: str) -> dict[str, Any]:
        self.version += 1
        self.pods[uid]["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.pods[uid])

    def annotate(self, p: dict[str, Any], annotations: dict[str, str | None]) -> dict[str, Any]:
        stored = self.pods[p["metadata"]["uid"]]["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = value
        return self._bump(p["metadata"]["uid"])

    def patch_status(self, p: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        current = self.pods[p["metadata"]["uid"]].setdefault("status", {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        return self._bump(p["metadata"]["uid"])

    def release(self, p: dict[str, Any]) -> None:
        self.released.append(p["metadata"]["uid"])

    def config_map(self, namespace: str, name: str) -> None:
        return None

    def secret(self, namespace: str, name: str) -> None:
        return None


class FakeEvents:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []

    def normal(self, p: dict[str, Any], reason: str, message: str) -> None:
        self.recorded.append(("Normal", reason, message))

    def warning(self, p: dict[str, Any], reason: str, message: str) -> None:
        self.recorded.append(("Warning", reason, message))

    def record(self, p: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.recorded.append((kind, reason, message))

    def forget(self, uid: str) -> None:
        pass

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.recorded]


class FakeBundles:
    """Bundles by pod UID, each with the ARN of the one instance that may read it."""

    def __init__(self) -> None:
        self.stored: dict[str, Any] = {}
        self.readers: dict[str, str] = {}

    def put(self, bundle: Any, instance_arn: str) -> str:
        self.stored[bundle.pod_uid] = bundle
        self.readers[bundle.pod_uid] = instance_arn
        return f"s3://bundles/{bundle.pod_uid}/{instance_arn}.json"

    def delete(self, uid: str) -> None:
        self.stored.pop(uid, None)


class FakeReports:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, receipts: list[str]) -> None:
        self.deleted.extend(receipts)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class World:
    """A reconciler wired to fakes, and the handles a test needs."""

    def __init__(self, **overrides: Any) -> None:
        self.settings = settings(
            subnet_ids=[s.subnet_id for s in DEFAULT_SUBNETS], capacity_retry_seconds=1, **overrides
        )
        self.ec2 = FakeEc2()
        self.pods = FakePods()
        self.events = FakeEvents()
        self.bundles = FakeBundles()
        self.reports = FakeReports()
        self.observed = Observed()
        self.clock = Clock()
        # The queue keeps the world's time: a pod told to wait is tried once it has passed.
        self.queue = WorkQueue(clock=lambda: self.clock().timestamp())
        self.wire()

    def wire(self, admission: Admission | None = None) -> None:
        """(Re)build the reconciler on the world's fakes as they are now, as a new process."""
        self.reconciler = Reconciler(
            settings=self.settings,
            observed=self.observed,
            pods=self.pods,  # type: ignore[arg-type]
            events=self.events,  # type: ignore[arg-type]
            ec2=self.ec2,  # type: ignore[arg-type]
            bundles=self.bundles,  # type: ignore[arg-type]
            reports=self.reports,  # type: ignore[arg-type]
            launcher=Launcher(self.settings, self.ec2, DEFAULT_SUBNETS),  # type: ignore[arg-type]
            catalog=Catalog.shipped,
            queue=self.queue,
            clock=self.clock,
            admission=admission,
        )

    def create(self, manifest: dict[str, Any]) -> str:
        self.observed.remember_pod(self.pods.add(manifest))
        return str(manifest["metadata"]["uid"])

    def reconcile(self, uid: str) -> dict[str, Any]:
        """Reconcile once; returns a copy of the pod as the API then holds it."""
        self.reconciler.reconcile(uid)
        return copy.deepcopy(self.pods.pods[uid])

    def instance_of(self, uid: str) -> Any:
        [instance] = [i for i in self.ec2.all_instances() if i.tags[tags.POD_UID] == uid]
        return instance


def cpu_pod(**annotations: str) -> dict[str, Any]:
    return pod({"orca.research/instance-type": "m7i.large", **annotations})


def report(uid: str, instance_id: str, sequence: int, phase: str, code: int | None) -> StatusReport:
    state = "running" if code is None else "terminated"
    container = ContainerReport(
        name="c", image="busybox", state=state, exit_code=code, started_at=NOW, ready=code is None
    )
    return StatusReport(
        pod_uid=uid,
        instance_id=instance_id,
        sequence=sequence,
        sent_at=NOW,
        phase=phase,  # type: ignore[arg-type]
        containers=[container],
    )


def test_launch_writes_intent_before_and_instance_id_after_the_call() -> None:
    world = World()
    uid = world.create(cpu_pod())

    stored = world.reconcile(uid)

    annotations = stored["metadata"]["annotations"]
    instance = world.instance_of(uid)
    assert annotations[tags.LAUNCH_ATTEMPT_ANNOTATION] == "1"
    assert annotations[tags.INSTANCE_ID_ANNOTATION] == instance.instance_id
    assert annotations[tags.DEADLINE_ANNOTATION] == "2026-12-04T19:00:00Z"
    request = world.ec2.request_of(instance.instance_id)
    assert request.client_token == annotations[tags.CLIENT_TOKEN_ANNOTATION]
    assert world.events.reasons() == ["Launching", "Launched"]
    assert world.ec2.calls["RunInstances"] == 1


def test_the_bundle_is_stored_after_the_launch_for_that_instance_alone() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.ec2.fail_next("RunInstances", "InsufficientInstanceCapacity")

    world.reconcile(uid)
    stored_before_a_launch = dict(world.bundles.readers)
    world.reconcile(uid)

    instance = world.instance_of(uid)
    assert stored_before_a_launch == {}
    assert world.bundles.readers == {uid: instance.arn}
    assert instance.arn == f"arn:aws:ec2:us-east-1:123456789012:instance/{instance.instance_id}"
    assert str(world.bundles.stored[uid].name) == "p"


def test_a_runtime_that_died_before_storing_the_bundle_stores_it_when_it_adopts() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.bundles.put = _raise_once(world.bundles.put)  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        world.reconcile(uid)
    instance = world.instance_of(uid)
    assert tags.INSTANCE_ID_ANNOTATION not in world.pods.pods[uid]["metadata"]["annotations"]

    restarted = World()
    restarted.ec2, restarted.pods = world.ec2, world.pods
    restarted.wire()
    restarted.observed.remember_pod(world.pods.pods[uid])
    stored = restarted.reconcile(uid)

    assert world.ec2.calls["RunInstances"] == 1
    assert stored["metadata"]["annotations"][tags.INSTANCE_ID_ANNOTATION] == instance.instance_id
    assert restarted.bundles.readers == {uid: instance.arn}


def _raise_once(put: Any) -> Any:
    calls = []

    def put_or_die(bundle: Any, instance_arn: str) -> str:
        calls.append(instance_arn)
        if len(calls) == 1:
            raise ConnectionError("the runtime died here")
        return str(put(bundle, instance_arn))

    return put_or_die


def test_reconciling_again_with_nothing_new_changes_nothing() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    version = world.pods.version

    world.reconcile(uid)

    assert world.ec2.calls["RunInstances"] == 1
    assert world.pods.version == version


def test_instance_of_a_pod_never_seen_is_left_to_the_garbage_collector() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    instance = world.instance_of(uid)
    stranger = World()
    stranger.ec2 = world.ec2
    stranger.wire()
    stranger.observed.remember_instance(instance)

    stranger.reconciler.reconcile(uid)

    assert world.ec2.instance(instance.instance_id).state == "pending"


def test_pod_seen_deleted_has_its_instance_terminated_and_bundle_removed() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    world.observed.remember_instance(world.instance_of(uid))

    world.observed.forget_pod(uid)
    world.reconciler.reconcile(uid)

    assert world.instance_of(uid).state in ("shutting-down", "terminated")
    assert uid not in world.bundles.stored


def test_out_of_memory_report_fails_the_pod_and_ends_the_instance() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    instance_id = world.instance_of(uid).instance_id
    world.observed.offer_report(report(uid, instance_id, 7, "Succeeded", 137), "receipt-7")

    stored = world.reconcile(uid)
    world.reconcile(uid)

    assert stored["status"]["phase"] == "Failed"
    assert world.instance_of(uid).state in ("shutting-down", "terminated")
    assert world.reports.deleted == ["receipt-7"]
    assert "ContainerFailed" in world.events.reasons()


def test_an_older_report_after_a_newer_one_is_ignored() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    instance_id = world.instance_of(uid).instance_id
    world.observed.offer_report(report(uid, instance_id, 9, "Running", None), "r9")
    world.reconcile(uid)

    world.observed.offer_report(report(uid, instance_id, 8, "Pending", None), "r8")
    stored = world.reconcile(uid)

    assert stored["status"]["phase"] == "Running"
    assert stored["metadata"]["annotations"][tags.REPORT_SEQUENCE_ANNOTATION] == "9"


def test_spot_instance_reclaimed_without_a_report_fails_the_pod_after_a_grace() -> None:
    world = World()
    uid = world.create(
        pod({"orca.research/instance-type": "g6.xlarge", "orca.research/launch-type": "spot"})
    )
    world.reconcile(uid)
    instance_id = world.instance_of(uid).instance_id
    gone = world.ec2.set_state(instance_id, "terminated", "Server.SpotInstanceTermination")
    world.observed.replace_instances([gone])

    waiting = world.reconcile(uid)
    world.clock.now += FINAL_REPORT_GRACE + timedelta(seconds=1)
    failed = world.reconcile(uid)

    assert waiting["status"]["phase"] == "Pending"
    assert failed["status"]["phase"] == "Failed"
    assert failed["status"]["reason"] == "SpotInterrupted"


def test_capacity_error_tries_the_next_zone_with_a_new_token() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.ec2.fail_next("RunInstances", "InsufficientInstanceCapacity")

    world.reconcile(uid)
    world.reconcile(uid)

    instance = world.instance_of(uid)
    annotations = world.pods.pods[uid]["metadata"]["annotations"]
    assert annotations[tags.LAUNCH_ATTEMPT_ANNOTATION] == "2"
    assert instance.tags[tags.ATTEMPT] == "2"
    assert "InsufficientCapacity" in world.events.reasons()


def test_quota_error_leaves_the_pod_pending_with_what_to_ask_for() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.ec2.fail_next("RunInstances", "VcpuLimitExceeded")

    stored = world.reconcile(uid)

    assert stored["status"]["phase"] == "Pending"
    waiting = stored["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "QuotaExceeded"
    assert "raise the EC2 service quota" in waiting["message"]
    assert world.ec2.all_instances() == []


def test_pod_past_its_deadline_is_failed_and_its_instance_ended() -> None:
    world = World()
    uid = world.create(cpu_pod(**{"orca.research/max-lifetime": "1h"}))
    world.reconcile(uid)
    world.observed.remember_instance(
        world.ec2.set_state(world.instance_of(uid).instance_id, "running")
    )

    world.clock.now += timedelta(hours=1, minutes=5)
    stored = world.reconcile(uid)

    assert stored["status"]["reason"] == "DeadlineExceeded"
    assert world.instance_of(uid).state in ("shutting-down", "terminated")


def test_a_report_after_the_pod_failed_completes_its_containers_but_not_its_phase() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    instance_id = world.instance_of(uid).instance_id
    deadline_report = report(uid, instance_id, 5, "Failed", None)
    world.observed.offer_report(deadline_report, "r5")
    world.reconcile(uid)

    world.observed.offer_report(report(uid, instance_id, 6, "Failed", 143), "r6")
    stored = world.reconcile(uid)

    assert stored["status"]["phase"] == "Failed"
    terminated = stored["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 143
    assert world.reports.deleted == ["r5", "r6"]


def test_an_instance_whose_agent_never_reports_is_ended_long_before_the_deadline() -> None:
    world = World()
    world.ec2 = FakeEc2(clock=world.clock)
    world.wire()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    instance_id = world.instance_of(uid).instance_id
    world.observed.remember_instance(world.ec2.set_state(instance_id, "running"))

    world.clock.now += timedelta(minutes=9)
    waiting = world.reconcile(uid)
    world.clock.now += timedelta(minutes=2)
    ended = world.reconcile(uid)

    assert waiting["status"]["phase"] == "Pending"
    assert ended["status"]["phase"] == "Failed"
    assert ended["status"]["reason"] == "AgentNotReporting"
    assert world.instance_of(uid).state in ("shutting-down", "terminated")


GROUP_ARN = "arn:aws:resource-groups:us-east-1:123456789012:group/orca-physics-pool"
RESERVATION = "cr-0123456789abcdef0"


def reserved_pod(value: str, **annotations: str) -> dict[str, Any]:
    return pod(
        {
            "orca.research/instance-type": "p5.48xlarge",
            "orca.research/capacity-reservation": value,
            **annotations,
        }
    )


def test_a_full_reservation_group_leaves_the_pod_pending_saying_the_group_is_full() -> None:
    world = World(capacity_reservation_group_arn=GROUP_ARN)
    uid = world.create(reserved_pod("group"))
    world.ec2.fail_next("RunInstances", "ReservationCapacityExceeded", times=2)

    world.reconcile(uid)
    stored = world.reconcile(uid)

    assert stored["status"]["phase"] == "Pending"
    assert world.ec2.all_instances() == []
    warnings = [(r, m) for kind, r, m in world.events.recorded if kind == "Warning"]
    assert [r for r, _ in warnings] == ["InsufficientCapacity", "WaitingForCapacity"]
    zone = warnings[0][1]
    assert zone.startswith(
        "The physics department's capacity reservation group has no free p5.48xlarge capacity "
        "in us-east-1"
    )
    assert "ReservationCapacityExceeded" in zone and zone.endswith("; trying the next zone")
    assert warnings[1][1] == (
        "The physics department's capacity reservation group has no free p5.48xlarge capacity "
        "in any of us-east-1a, us-east-1b; the pod waits and ORCA tries again every 1 s"
    )
    waiting = stored["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "WaitingForCapacity"
    launching = [m for _, r, m in world.events.recorded if r == "Launching"]
    assert all("into the physics department's capacity reservation group" in m for m in launching)


def test_a_full_reservation_leaves_the_pod_pending_naming_the_reservation_and_zone() -> None:
    world = World()
    uid = world.create(
        reserved_pod(RESERVATION, **{"orca.research/availability-zone": "us-east-1b"})
    )
    world.ec2.fail_next("RunInstances", "ReservationCapacityExceeded")

    stored = world.reconcile(uid)

    assert stored["status"]["phase"] == "Pending"
    assert world.events.recorded[-1] == (
        "Warning",
        "WaitingForCapacity",
        f"Capacity reservation {RESERVATION} has no free p5.48xlarge capacity in us-east-1b; "
        "the pod waits and ORCA tries again every 1 s",
    )

    world.reconcile(uid)  # brought back by its own status write: it waits its second
    waited = world.ec2.calls["RunInstances"]
    world.clock.now += timedelta(seconds=1)
    world.reconcile(uid)

    assert waited == 1
    request = world.ec2.request_of(world.instance_of(uid).instance_id)
    assert request.reservation.reservation_id == RESERVATION
    assert request.subnet_id == DEFAULT_SUBNETS[1].subnet_id


def test_a_reservation_ec2_does_not_know_fails_the_pod_naming_the_annotation() -> None:
    world = World(capacity_reservation_group_arn=GROUP_ARN)
    uid = world.create(
        reserved_pod(RESERVATION, **{"orca.research/availability-zone": "us-east-1a"})
    )
    world.ec2.fail_next("RunInstances", "InvalidCapacityReservationId.NotFound")

    stored = world.reconcile(uid)

    message = (
        f"orca.research/capacity-reservation is {RESERVATION!r}: EC2 knows no capacity "
        f"reservation {RESERVATION} in us-east-1 (InvalidCapacityReservationId.NotFound). "
        "Allowed: open, none, group, or the id of one of the department's own reservations."
    )
    assert world.events.recorded[-1] == ("Warning", "InvalidAnnotation", message)
    assert stored["status"]["phase"] == "Failed"
    assert stored["status"]["reason"] == "InvalidAnnotation"
    assert world.ec2.all_instances() == []


def test_another_department_reservation_fails_the_pod_saying_whose_it_may_use() -> None:
    world = World()
    uid = world.create(
        reserved_pod(RESERVATION, **{"orca.research/availability-zone": "us-east-1a"})
    )
    world.ec2.fail_next("RunInstances", "UnauthorizedOperation")

    stored = world.reconcile(uid)

    assert stored["status"]["phase"] == "Failed"
    assert world.events.recorded[-1] == (
        "Warning",
        "InvalidAnnotation",
        f"orca.research/capacity-reservation is {RESERVATION!r}: the physics department may "
        f"not launch into capacity reservation {RESERVATION}: its IAM policy allows only the "
        "department's own reservations (UnauthorizedOperation). Allowed: open, none, or the id "
        "of one of the department's own reservations.",
    )


def test_a_refused_launch_without_a_reservation_target_is_not_blamed_on_the_pod() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.ec2.fail_next("RunInstances", "UnauthorizedOperation")

    with pytest.raises(AuthError):
        world.reconcile(uid)

    assert (world.pods.pods[uid].get("status") or {}).get("phase") != "Failed"
    assert "InvalidAnnotation" not in world.events.reasons()


@pytest.mark.parametrize(("typos", "tail"), [(2, "1 more problem:"), (3, "2 more problems:")])
def test_a_refused_pod_status_counts_the_other_problems_in_its_events(
    typos: int, tail: str
) -> None:
    world = World()
    misspelt = {f"orca.research/instance_typ{'e' * i}": "m7i.large" for i in range(typos)}
    uid = world.create(pod({"orca.research/instance-type": "m7i.large", **misspelt}))

    stored = world.reconcile(uid)

    assert stored["status"]["phase"] == "Failed"
    assert f"(and {tail} see the pod's events)" in stored["status"]["message"]
    assert len(world.events.reasons()) == typos
    assert world.ec2.all_instances() == []


def test_a_container_first_seen_finished_still_gets_its_started_event() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    instance_id = world.instance_of(uid).instance_id
    world.observed.offer_report(report(uid, instance_id, 3, "Succeeded", 0), "r3")

    world.reconcile(uid)

    reasons = world.events.reasons()
    assert reasons.index("Started") < reasons.index("Completed")
    assert reasons.count("Started") == 1


def test_a_container_seen_running_then_finished_is_started_once() -> None:
    world = World()
    uid = world.create(cpu_pod())
    world.reconcile(uid)
    instance_id = world.instance_of(uid).instance_id
    world.observed.offer_report(report(uid, instance_id, 3, "Running", None), "r3")
    world.reconcile(uid)
    world.observed.offer_report(report(uid, instance_id, 4, "Succeeded", 0), "r4")

    world.reconcile(uid)

    assert world.events.reasons().count("Started") == 1
    assert "Completed" in world.events.reasons()
