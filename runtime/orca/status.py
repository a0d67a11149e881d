"""Pod status as a kubelet would write it, from what ORCA knows for certain.

A pod is Running only when the agent reports its containers running, and
Succeeded only when every container exited 0: the agent's own verdict is
checked against the exit codes, so a 137 can never read as success. While the
instance launches and boots, the pod is Pending and its containers wait with a
reason that ``kubectl get pods`` shows in the STATUS column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from orca.messages import ContainerReport, StatusReport

INSTANCE_CONDITION = "orca.research/InstanceRunning"


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str) -> datetime:
    """The inverse of :func:`timestamp`, for the times the runtime wrote on a pod."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _condition(
    kind: str, ok: bool, now: datetime, reason: str = "", message: str = ""
) -> dict[str, Any]:
    # Absent reasons are sent as null: the status patch merges conditions by type, and a
    # stale reason ("is booting") would otherwise outlive the state it described.
    condition: dict[str, Any] = {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason or None,
        "message": message or None,
    }
    condition["lastTransitionTime"] = timestamp(now)
    condition["lastProbeTime"] = None
    return condition


def _merge_conditions(
    existing: Sequence[Mapping[str, Any]], updates: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Conditions with ``updates`` applied; a transition time moves only on a change."""
    merged = {c["type"]: dict(c) for c in existing}
    for update in updates:
        before = merged.get(update["type"])
        if before is not None and before.get("status") == update["status"]:
            update = {**update, "lastTransitionTime": before.get("lastTransitionTime")}
        merged[update["type"]] = update
    return list(merged.values())


def _waiting(
    spec_containers: Sequence[Mapping[str, Any]], reason: str, message: str
) -> list[dict[str, Any]]:
    return [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"waiting": {"reason": reason, "message": message}},
        }
        for c in spec_containers
    ]


def pending_status(
    pod: Mapping[str, Any], reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """Pending while ORCA launches, boots or waits; ``reason`` shows in kubectl's STATUS."""
    spec = pod.get("spec") or {}
    current = pod.get("status") or {}
    conditions = _merge_conditions(
        current.get("conditions") or [],
        [
            _condition("PodScheduled", True, now),
            _condition(INSTANCE_CONDITION, False, now, reason, message),
            _condition("Ready", False, now, "ContainersNotReady", message),
        ],
    )
    status: dict[str, Any] = {
        "phase": "Pending",
        "conditions": conditions,
        "containerStatuses": _waiting(spec.get("containers") or [], reason, message),
        "reason": None,
        "message": message,
    }
    if spec.get("initContainers"):
        status["initContainerStatuses"] = _waiting(spec["initContainers"], reason, message)
    return status


def failed_status(
    pod: Mapping[str, Any], reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """Failed before or without a report from the agent (rejected, lost instance)."""
    current = pod.get("status") or {}
    conditions = _merge_conditions(
        current.get("conditions") or [],
        [
            _condition(INSTANCE_CONDITION, False, now, reason, message),
            _condition("Ready", False, now, "PodFailed", message),
            _condition("ContainersReady", False, now, "PodFailed", message),
        ],
    )
    statuses = []
    for container in current.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "terminated" not in state:
            container = {
                **container,
                "ready": False,
                "started": False,
                "state": {"terminated": {"exitCode": 137, "reason": reason, "message": message}},
            }
        statuses.append(container)
    status: dict[str, Any] = {
        "phase": "Failed",
        "reason": reason,
        "message": message,
        "conditions": conditions,
    }
    if statuses:
        status["containerStatuses"] = statuses
    return status


def _container_status(report: ContainerReport) -> dict[str, Any]:
    state: dict[str, Any]
    if report.state == "running":
        state = {"running": {"startedAt": timestamp(report.started_at or datetime.now(UTC))}}
    elif report.state == "terminated":
        terminated: dict[str, Any] = {
            "exitCode": report.exit_code if report.exit_code is not None else -1,
            "reason": report.reason or ("Completed" if report.exit_code == 0 else "Error"),
        }
        if report.message:
            terminated["message"] = report.message
        if report.started_at:
            terminated["startedAt"] = timestamp(report.started_at)
        if report.finished_at:
            terminated["finishedAt"] = timestamp(report.finished_at)
        state = {"terminated": terminated}
    else:
        waiting = {"reason": report.reason or "ContainerCreating"}
        if report.message:
            waiting["message"] = report.message
        state = {"waiting": waiting}
    return {
        "name": report.name,
        "image": report.image,
        "imageID": report.image_id,
        "ready": report.ready,
        "restartCount": report.restart_count,
        "started": report.state == "running",
        "state": state,
    }


def _stopped(container: dict[str, Any], reason: str) -> dict[str, Any]:
    """A container status of a finished pod: terminated, never running or ready."""
    if "terminated" in container["state"]:
        return container
    return {
        **container,
        "ready": False,
        "started": False,
        "state": {"terminated": {"exitCode": 137, "reason": reason}},
    }


def verified_phase(report: StatusReport) -> str:
    """The pod phase the containers' real outcome supports, whatever the agent claims."""
    if report.phase != "Succeeded":
        return report.phase
    finished = report.containers and all(c.state == "terminated" for c in report.containers)
    if finished and all(c.exit_code == 0 for c in report.containers):
        return "Succeeded"
    return "Failed"


def reported_status(
    pod: Mapping[str, Any], report: StatusReport, instance_message: str, now: datetime
) -> dict[str, Any]:
    """The pod's status from the agent's snapshot."""
    current = pod.get("status") or {}
    phase = verified_phase(report)
    running = phase == "Running"
    initialized = all(c.state == "terminated" and c.exit_code == 0 for c in report.init_containers)
    ready = running and bool(report.containers) and all(c.ready for c in report.containers)
    updates = [
        _condition("PodScheduled", True, now),
        _condition(INSTANCE_CONDITION, phase in ("Pending", "Running"), now, "", instance_message),
        _condition("Initialized", initialized, now),
        _condition("ContainersReady", ready, now),
        _condition("Ready", ready, now),
    ]
    containers = [_container_status(c) for c in report.containers]
    init_containers = [_container_status(c) for c in report.init_containers]
    if phase in ("Succeeded", "Failed"):
        # A finished pod runs nothing, whatever a container's last report said (the
        # agent reports a pod failed at its deadline while it still stops containers).
        reason = report.reason or "PodFinished"
        containers = [_stopped(c, reason) for c in containers]
        init_containers = [_stopped(c, reason) for c in init_containers]
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": _merge_conditions(current.get("conditions") or [], updates),
        "containerStatuses": containers,
        "reason": report.reason if phase in ("Failed", "Succeeded") else None,
        "message": report.message,
    }
    if init_containers:
        status["initContainerStatuses"] = init_containers
    if report.private_ip:
        status["podIP"] = report.private_ip
        status["podIPs"] = [{"ip": report.private_ip}]
        status["hostIP"] = report.private_ip
        status["hostIPs"] = [{"ip": report.private_ip}]
    started = [c.started_at for c in report.init_containers + report.containers if c.started_at]
    if started and not current.get("startTime"):
        status["startTime"] = timestamp(min(started))
    return status
