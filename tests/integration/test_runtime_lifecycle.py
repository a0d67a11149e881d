"""The runtime against the loopback stand-ins: node, refusals, deletion, restarts, orphans."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from orca import status as pod_status
from orca import tags
from orca.aws.ec2 import Ec2
from orca.aws.model import LaunchRequest, ReservationChoice
from orca.kube.pods import PodApi
from orca.pod_launch import PodLaunch
from tests.integration.runtime_fixtures import Burst, case, eventually


def _cpu_pod(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {"orca.research/instance-type": "m7i.large", **annotations},
        },
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [{"key": tags.BURST_TAINT_KEY, "operator": "Exists"}],
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
        },
    }


def test_node_registers_with_labels_taint_capacity_and_a_lease(burst: Burst) -> None:
    burst.start()

    node = burst.core.read_node(burst.node)
    lease = client.CoordinationV1Api(burst.core.api_client).read_namespaced_lease(
        burst.node, "kube-node-lease"
    )

    labels = node.metadata.labels
    assert labels["type"] == "virtual-kubelet"
    assert labels["orca.research/provider"] == "aws"
    assert labels["orca.research/department"] == burst.settings.department
    assert labels["topology.kubernetes.io/region"] == "us-east-1"
    [taint] = node.spec.taints
    assert (taint.key, taint.value, taint.effect) == (
        "orca.research/burst-node",
        "true",
        "NoSchedule",
    )
    assert node.status.allocatable["nvidia.com/gpu"] == "64"
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True"
    assert lease.spec.holder_identity == burst.node
    assert lease.spec.lease_duration_seconds == 40


def test_bad_annotations_each_end_failed_with_a_warning_and_no_instance(burst: Burst) -> None:
    burst.start()
    pods = [burst.create(document) for document in case("05-bad-annotations.yaml")]

    for pod in pods:
        name = pod["metadata"]["name"]

        def failed(name: str = name) -> bool:
            return burst.phase("default", name) == "Failed"

        eventually(failed, what=f"{name} Failed")
        warnings = [e for e in burst.events("default", name) if e["type"] == "Warning"]
        assert warnings, f"{name} has no Warning event"
        assert all(e["reason"] == "InvalidAnnotation" for e in warnings)
        assert all(
            "orca.research/" in e["message"] and "Allowed:" in e["message"] for e in warnings
        )
        assert burst.stored("default", name)["status"]["reason"] == "InvalidAnnotation"

    assert burst.instances() == []


def test_pod_deleted_while_pending_terminates_its_instance_and_is_released(burst: Burst) -> None:
    burst.start()
    pod = burst.create(_cpu_pod("waits-forever"))
    uid = pod["metadata"]["uid"]
    [instance] = eventually(lambda: burst.instances(uid), what="an instance for the pod")

    burst.core.delete_namespaced_pod("waits-forever", "default")

    eventually(lambda: burst.pod("default", "waits-forever") is None, what="the pod released")
    [after] = burst.instances(uid)
    assert after.instance_id == instance.instance_id
    assert after.state in ("shutting-down", "terminated")
    reasons = [e["reason"] for e in burst.events("default", "waits-forever")]
    assert reasons[:2] == ["Launching", "Launched"]
    assert "Terminating" in reasons


def test_launch_records_intent_then_instance_with_tags_and_events(burst: Burst) -> None:
    burst.start()
    pod = burst.create(_cpu_pod("tagged"))
    uid = pod["metadata"]["uid"]

    annotated = eventually(
        lambda: (burst.stored("default", "tagged")["metadata"].get("annotations") or {}).get(
            tags.INSTANCE_ID_ANNOTATION
        ),
        what="the instance id on the pod",
    )

    [instance] = burst.instances(uid)
    assert annotated == instance.instance_id
    assert instance.instance_type == "m7i.large"
    assert instance.tags[tags.POD] == "default/tagged"
    assert instance.tags[tags.NODE] == burst.node
    assert instance.tags["department"] == burst.settings.department
    assert instance.tags["cost-center"] == "cc-test"

    def waiting_reason() -> str:
        status = burst.stored("default", "tagged")["status"]
        assert status["phase"] == "Pending"
        reason: str = status["containerStatuses"][0]["state"]["waiting"]["reason"]
        return reason

    eventually(lambda: waiting_reason() == "InstanceBooting", what="Pending, InstanceBooting")
    launched = [e for e in burst.events("default", "tagged") if e["reason"] == "Launched"]
    assert launched[0]["message"].startswith(f"Launched {instance.instance_id} m7i.large on-demand")


class _Crash(BaseException):
    """Stands for the process dying: not an Exception, so no handler in the runtime catches it."""


# The simulated crash ends a worker thread with an exception, which is the point.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_runtime_killed_between_launch_and_record_restarts_with_one_instance(
    burst: Burst, monkeypatch: Any
) -> None:
    original = PodLaunch._record_instance
    crashed: list[str] = []

    def die_before_recording(self: PodLaunch, pod: dict[str, Any], instance: Any) -> None:
        crashed.append(instance.instance_id)
        raise _Crash

    monkeypatch.setattr(PodLaunch, "_record_instance", die_before_recording)
    runtime = burst.start(workers=1)
    pod = burst.create(_cpu_pod("crash-test"))
    uid = pod["metadata"]["uid"]
    eventually(lambda: crashed, what="the launch to happen")
    runtime.controller.stop(timeout=1)
    runtime.node.stop()
    burst.runtime = None
    intent = burst.stored("default", "crash-test")["metadata"]["annotations"]
    assert tags.LAUNCH_ATTEMPT_ANNOTATION in intent
    assert tags.INSTANCE_ID_ANNOTATION not in intent

    monkeypatch.setattr(PodLaunch, "_record_instance", original)
    burst.start()

    recorded = eventually(
        lambda: burst.stored("default", "crash-test")["metadata"]["annotations"].get(
            tags.INSTANCE_ID_ANNOTATION
        ),
        what="the adopted instance id",
    )
    instances = burst.instances(uid)
    assert [i.instance_id for i in instances] == [recorded] == crashed


def test_orphan_instance_is_terminated_after_two_passes_and_live_pods_are_kept(
    burst: Burst,
) -> None:
    ec2 = Ec2(burst.aws.ec2)
    orphan_tags = tags.instance_tags(
        cluster=burst.settings.cluster_name,
        department=burst.settings.department,
        pod_namespace="default",
        pod_name="long-gone",
        pod_uid="deadbeef-0000-4000-8000-000000000000",
        attempt=1,
        cost_center=None,
    )
    orphan = ec2.run_instance(
        LaunchRequest(
            instance_type="m7i.large",
            subnet_id=burst.envelope.subnet_ids[0],
            launch_template_id=burst.envelope.launch_templates["x86_64"],
            client_token="orphan-test-1",
            user_data="#!/bin/sh\n",
            tags=orphan_tags,
        )
    )
    burst.start()
    kept = burst.create(_cpu_pod("kept"))

    eventually(
        lambda: not next(i for i in burst.instances() if i.instance_id == orphan.instance_id).live,
        what="the orphan terminated",
    )
    [mine] = eventually(lambda: burst.instances(kept["metadata"]["uid"]), what="kept's instance")
    assert mine.live


def test_pods_on_other_nodes_are_not_touched(burst: Burst) -> None:
    burst.start()
    elsewhere = _cpu_pod("elsewhere")
    elsewhere["spec"]["nodeName"] = "campus-node-7"
    burst.create(elsewhere, bind=False)
    mine = burst.create(_cpu_pod("mine"))

    eventually(lambda: burst.instances(mine["metadata"]["uid"]), what="mine launched")
    assert len(burst.instances()) == 1
    assert PodApi  # the runtime's pod API filters by node on the server side
    assert burst.phase("default", "elsewhere") == "Pending"


def test_no_capacity_in_one_zone_moves_the_launch_to_the_next_zone(
    burst: Burst, local_aws: Any
) -> None:
    # g6e.2xlarge is used by no other test, so the injected shortage is this test's alone.
    local_aws.control.inject_capacity_error("g6e.2xlarge", "us-east-1a")
    local_aws.control.inject_capacity_error("g6e.2xlarge", "us-east-1b", times=1)
    burst.start()
    pod = burst.create(_cpu_pod("short-of-l40s", **{"orca.research/instance-type": "g6e.2xlarge"}))
    uid = pod["metadata"]["uid"]

    try:
        [instance] = eventually(lambda: burst.instances(uid), timeout=60, what="a launch")
    finally:
        local_aws.control.clear_capacity_errors()

    assert instance.availability_zone == "us-east-1b"
    events = burst.events("default", "short-of-l40s")
    shortages = [
        e["message"]
        for e in events
        if e["reason"] in ("InsufficientCapacity", "WaitingForCapacity") and e["type"] == "Warning"
    ]
    assert any("us-east-1a" in message for message in shortages), shortages
    assert instance.tags[tags.ATTEMPT] != "1"


def test_no_capacity_for_a_type_in_any_zone_launches_the_pods_fallback_type(
    burst: Burst, local_aws: Any
) -> None:
    # g6e.4xlarge and g6e.8xlarge are used by no other test.
    for zone in ("us-east-1a", "us-east-1b"):
        local_aws.control.inject_capacity_error("g6e.4xlarge", zone)
    burst.start()
    annotations = {
        "orca.research/instance-type": "g6e.4xlarge",
        "orca.research/fallback-instance-types": "g6e.8xlarge",
    }
    pod = burst.create(_cpu_pod("falls-back", **annotations))
    uid = pod["metadata"]["uid"]

    try:
        [instance] = eventually(lambda: burst.instances(uid), timeout=60, what="a launch")
    finally:
        local_aws.control.clear_capacity_errors()

    assert instance.instance_type == "g6e.8xlarge"
    warnings = [
        e["message"] for e in burst.events("default", "falls-back") if e["type"] == "Warning"
    ]
    assert any("trying the fallback instance type g6e.8xlarge" in m for m in warnings), warnings


def test_a_pod_in_a_capacity_block_launches_into_it_and_stops_before_ec2_ends_the_block(
    burst: Burst, local_aws: Any
) -> None:
    # g6e.16xlarge is used by no other test.
    block = "cr-0b10c" + uuid.uuid4().hex[:12]
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    local_aws.control.define_capacity_reservation(
        block, "g6e.16xlarge", "us-east-1a", 1, capacity_block=(end - timedelta(days=1), end)
    )
    burst.start()
    annotations = {
        "orca.research/instance-type": "g6e.16xlarge",
        "orca.research/launch-type": "capacity-block",
        "orca.research/capacity-reservation": block,
        "orca.research/availability-zone": "us-east-1a",
    }
    pod = burst.create(_cpu_pod("in-a-block", **annotations))
    uid = pod["metadata"]["uid"]

    [instance] = eventually(lambda: burst.instances(uid), timeout=60, what="a launch")

    assert instance.capacity_reservation_id == block
    stored = burst.pod("default", "in-a-block")
    assert stored is not None
    deadline = stored["metadata"]["annotations"][tags.DEADLINE_ANNOTATION]
    assert deadline == pod_status.timestamp(end - timedelta(minutes=32))


def test_health_and_metrics_endpoint_reports_readiness_and_launches(burst: Burst) -> None:
    runtime = burst.start()
    assert runtime.health is not None
    base = f"http://127.0.0.1:{runtime.health.port}"
    pod = burst.create(_cpu_pod("counted"))
    eventually(lambda: burst.instances(pod["metadata"]["uid"]), what="a launch")

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert get("/healthz") == (200, "ok\n")
    assert eventually(lambda: get("/readyz")[0] == 200, what="ready")
    status, metrics = get("/metrics")
    assert status == 200
    assert 'orca_launches_total{instance_type="m7i.large",market="on-demand"} 1.0' in metrics
    assert f'orca_node_ready{{department="{burst.settings.department}"}} 1.0' in metrics


def test_a_group_pod_waits_pending_while_the_group_is_full_then_launches_into_a_new_slot(
    burst: Burst, local_aws: Any
) -> None:
    department = burst.settings.department
    group = f"arn:aws:resource-groups:us-east-1:123456789012:group/orca-{department}-pool"
    reservation = "cr-" + uuid.uuid4().hex[:17]
    subnet, zone = sorted(burst.envelope.subnet_zones.items(), key=lambda item: item[1])[0]
    local_aws.control.define_capacity_reservation(reservation, "m7i.large", zone, 1, group)
    # Another user's instance holds the only slot; untagged, so the runtime never sees it.
    blocker = Ec2(burst.aws.ec2).run_instance(
        LaunchRequest(
            instance_type="m7i.large",
            subnet_id=subnet,
            launch_template_id=burst.envelope.launch_templates["x86_64"],
            client_token=f"blocker-{uuid.uuid4().hex}",
            user_data="#!/bin/sh\n",
            tags={"Name": "holds the reservation"},
            reservation=ReservationChoice.group(group),
        )
    )
    burst.start(capacity_reservation_group_arn=group)

    try:
        pod = burst.create(_cpu_pod("reserved", **{"orca.research/capacity-reservation": "group"}))
        uid = pod["metadata"]["uid"]

        def attempts() -> int:
            annotations = burst.stored("default", "reserved")["metadata"].get("annotations") or {}
            return int(annotations.get(tags.LAUNCH_ATTEMPT_ANNOTATION, "0"))

        def waiting() -> dict[str, str] | None:
            status = burst.stored("default", "reserved")["status"]
            assert status["phase"] == "Pending"
            state: dict[str, str] = status["containerStatuses"][0]["state"]["waiting"]
            return state if state["reason"] == "WaitingForCapacity" else None

        # Attempts 1 and 2 walk the two zones, then the pod waits; 4 means it tried again.
        eventually(lambda: attempts() >= 4, timeout=60, what="launch attempts after a wait")
        assert burst.instances(uid) == []
        # Each new attempt shows Launching for a moment; between attempts the pod waits.
        zones = ", ".join(sorted(set(burst.envelope.subnet_zones.values())))
        assert eventually(waiting, what="WaitingForCapacity") == {
            "reason": "WaitingForCapacity",
            "message": f"The {department} department's capacity reservation group has no free "
            f"m7i.large capacity in any of {zones}; the pod waits and ORCA tries again every 1 s",
        }
        warnings = [e for e in burst.events("default", "reserved") if e["type"] == "Warning"]
        assert {e["reason"] for e in warnings} == {"InsufficientCapacity", "WaitingForCapacity"}

        local_aws.control.define_capacity_reservation(reservation, "m7i.large", zone, 2, group)

        [instance] = eventually(lambda: burst.instances(uid), timeout=30, what="a launch")
        assert instance.capacity_reservation_id == reservation
        assert instance.availability_zone == zone
        launched = eventually(
            lambda: [e for e in burst.events("default", "reserved") if e["reason"] == "Launched"],
            what="the Launched event",
        )
        assert launched[0]["message"].endswith(f"in {zone} (capacity reservation {reservation})")
        assert burst.phase("default", "reserved") == "Pending"
    finally:
        Ec2(burst.aws.ec2).terminate([blocker.instance_id])
        local_aws.control.define_capacity_reservation(reservation, "m7i.large", zone, 0, group)
