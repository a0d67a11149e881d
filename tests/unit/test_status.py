"""Pod status never lies: phases come from real exit codes."""

from __future__ import annotations

from datetime import UTC, datetime

from orca.messages import ContainerReport, StatusReport
from orca.status import INSTANCE_CONDITION, failed_status, pending_status, reported_status
from tests.unit.helpers import pod

NOW = datetime(2026, 12, 3, 19, 0, tzinfo=UTC)


def report(phase: str, *containers: ContainerReport, **fields: object) -> StatusReport:
    return StatusReport(
        pod_uid="u1",
        instance_id="i-0abc",
        sequence=3,
        sent_at=NOW,
        phase=phase,  # type: ignore[arg-type]
        containers=list(containers),
        **fields,  # type: ignore[arg-type]
    )


def exited(code: int, reason: str | None = None) -> ContainerReport:
    return ContainerReport(
        name="c",
        image="busybox",
        state="terminated",
        exit_code=code,
        reason=reason,
        started_at=NOW,
        finished_at=NOW,
    )


def test_pending_pod_waits_with_the_launch_reason_kubectl_shows() -> None:
    status = pending_status(pod(), "InstanceBooting", "i-0abc is booting", NOW)

    assert status["phase"] == "Pending"
    [container] = status["containerStatuses"]
    assert container["state"]["waiting"]["reason"] == "InstanceBooting"
    condition = next(c for c in status["conditions"] if c["type"] == INSTANCE_CONDITION)
    assert condition["status"] == "False"
    assert condition["message"] == "i-0abc is booting"


def test_running_report_makes_a_running_ready_pod_with_the_instance_ip() -> None:
    running = ContainerReport(
        name="c", image="busybox", state="running", started_at=NOW, ready=True
    )

    status = reported_status(
        pod(), report("Running", running, private_ip="10.0.1.7"), "i-0abc", NOW
    )

    assert status["phase"] == "Running"
    assert status["podIP"] == "10.0.1.7"
    assert status["containerStatuses"][0]["state"]["running"]["startedAt"] == "2026-12-03T19:00:00Z"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


def test_exit_137_is_failed_even_if_the_agent_claims_success() -> None:
    status = reported_status(pod(), report("Succeeded", exited(137, "OOMKilled")), "i-0abc", NOW)

    assert status["phase"] == "Failed"
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_exit_zero_everywhere_is_succeeded_with_reason_completed() -> None:
    status = reported_status(pod(), report("Succeeded", exited(0)), "i-0abc", NOW)

    assert status["phase"] == "Succeeded"
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_failed_step_keeps_exit_code_and_reason_error() -> None:
    status = reported_status(pod(), report("Failed", exited(3)), "i-0abc", NOW)

    assert status["phase"] == "Failed"
    assert status["containerStatuses"][0]["state"]["terminated"] == {
        "exitCode": 3,
        "reason": "Error",
        "startedAt": "2026-12-03T19:00:00Z",
        "finishedAt": "2026-12-03T19:00:00Z",
    }


def test_condition_transition_time_moves_only_on_a_change() -> None:
    earlier = datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    p = pod()
    p["status"] = pending_status(p, "Launching", "launching", earlier)

    again = pending_status(p, "InstanceBooting", "booting", NOW)

    condition = next(c for c in again["conditions"] if c["type"] == INSTANCE_CONDITION)
    assert condition["lastTransitionTime"] == "2026-12-03T18:00:00Z"
    assert condition["reason"] == "InstanceBooting"


def test_failed_without_a_report_marks_waiting_containers_terminated() -> None:
    p = pod()
    p["status"] = pending_status(p, "InstanceBooting", "booting", NOW)

    status = failed_status(p, "SpotInterrupted", "EC2 reclaimed it", NOW)

    assert status["phase"] == "Failed"
    assert status["reason"] == "SpotInterrupted"
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "SpotInterrupted"


def test_a_finished_pod_shows_no_container_running_or_ready() -> None:
    still_running = ContainerReport(
        name="c", image="busybox", state="running", started_at=NOW, ready=True
    )

    status = reported_status(
        pod(), report("Failed", still_running, reason="DeadlineExceeded"), "i-0abc", NOW
    )

    [container] = status["containerStatuses"]
    assert status["phase"] == "Failed"
    assert container["ready"] is False
    assert container["state"]["terminated"]["reason"] == "DeadlineExceeded"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "False"


def test_conditions_without_a_reason_clear_the_old_one() -> None:
    p = pod()
    p["status"] = pending_status(p, "InstanceBooting", "i-0abc is booting", NOW)

    status = reported_status(p, report("Succeeded", exited(0)), "i-0abc", NOW)

    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == (None, None)
