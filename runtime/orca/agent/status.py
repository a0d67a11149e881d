"""The pod's status as the agent knows it, and its phase computed as the kubelet does.

Each container is a :class:`ContainerStatus` the supervisors update under one
lock; :meth:`PodStatus.snapshot` turns the whole pod into the
:class:`~orca.messages.StatusReport` fields at one instant, so every report is a
consistent full snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from orca.messages import ContainerReport, ContainerStateName, PodPhase

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    image: str
    state: ContainerStateName = "waiting"
    reason: str | None = "ContainerCreating"
    message: str | None = None
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    restart_count: int = 0
    image_id: str = ""
    # True once the container has run and exited at least once (the kubelet's
    # lastTerminationState): a container waiting to restart counts as stopped.
    has_terminated: bool = False
    # False when a terminated container will be started again by the restart policy.
    final: bool = True

    def report(self) -> ContainerReport:
        return ContainerReport(
            name=self.name,
            image=self.image,
            image_id=self.image_id,
            state=self.state,
            reason=self.reason,
            message=self.message,
            exit_code=self.exit_code,
            started_at=self.started_at,
            finished_at=self.finished_at,
            ready=self.state == "running",
            restart_count=self.restart_count,
        )


def compute_phase(
    restart_policy: str, init: Sequence[ContainerStatus], main: Sequence[ContainerStatus]
) -> PodPhase:
    """The pod phase from its containers, after the kubelet's ``getPhase``."""
    for status in init:
        failed = status.state == "terminated" and status.exit_code != 0
        if failed and restart_policy == "Never":
            return "Failed"
    if not all(s.state == "terminated" and s.exit_code == 0 for s in init):
        return "Pending"

    running = waiting = stopped = succeeded = 0
    for status in main:
        if status.state == "running":
            running += 1
        elif status.state == "terminated":
            stopped += 1
            succeeded += status.exit_code == 0
        elif status.has_terminated:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    if restart_policy == "Never":
        return "Failed"
    # OnFailure: the failed containers are being restarted.
    return "Running"


@dataclass
class Snapshot:
    phase: PodPhase
    reason: str | None
    message: str | None
    init_containers: list[ContainerReport]
    containers: list[ContainerReport]


@dataclass
class PodStatus:
    """Every container's status; ``on_change`` is called with each new snapshot."""

    restart_policy: str
    init: dict[str, ContainerStatus]
    main: dict[str, ContainerStatus]
    on_change: Callable[[Snapshot], None] = lambda snapshot: None
    forced_phase: PodPhase | None = None
    # The phase the pod ends in once the containers an early stop is stopping are gone.
    stopping_as: PodPhase | None = None
    reason: str | None = None
    message: str | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def for_spec(cls, spec: dict[str, Any], on_change: Callable[[Snapshot], None]) -> PodStatus:
        inits = spec.get("initContainers") or []
        # Main containers wait behind init containers with the kubelet's reason.
        first_reason = "PodInitializing" if inits else "ContainerCreating"
        return cls(
            restart_policy=str(spec.get("restartPolicy") or "Always"),
            init={
                str(c["name"]): ContainerStatus(
                    name=str(c["name"]),
                    image=str(c["image"]),
                    reason="ContainerCreating" if i == 0 else "PodInitializing",
                )
                for i, c in enumerate(inits)
            },
            main={
                str(c["name"]): ContainerStatus(
                    name=str(c["name"]), image=str(c["image"]), reason=first_reason
                )
                for c in spec.get("containers") or []
            },
            on_change=on_change,
        )

    def get(self, name: str) -> ContainerStatus:
        with self._lock:
            return self.init.get(name) or self.main[name]

    def update(self, name: str, **changes: Any) -> None:
        """Changes one container's status and publishes the new snapshot."""
        with self._lock:
            table = self.init if name in self.init else self.main
            table[name] = replace(table[name], **changes)
            self.on_change(self.snapshot())

    def force(self, phase: PodPhase, reason: str, message: str) -> None:
        """Ends the pod whatever its containers say (deadline, node shutdown, bad spec)."""
        with self._lock:
            if self.phase() in TERMINAL_PHASES:
                return
            self.forced_phase, self.reason, self.message = phase, reason, message
            self.on_change(self.snapshot())

    def stopping(self, phase: PodPhase, reason: str, message: str) -> None:
        """The pod is being stopped early (deadline, spot notice, node shutdown): reports say
        why at once, but the phase turns ``phase`` only when the containers have stopped
        (then :meth:`force` seals it). A terminal phase sooner would let the runtime end the
        instance while the containers still have their grace period, as a kubelet keeps a
        terminating pod Running until its containers are gone."""
        with self._lock:
            if self.phase() in TERMINAL_PHASES:
                return
            self.stopping_as, self.reason, self.message = phase, reason, message
            self.on_change(self.snapshot())

    def phase(self) -> PodPhase:
        with self._lock:
            if self.forced_phase is not None:
                return self.forced_phase
            computed = compute_phase(
                self.restart_policy, list(self.init.values()), list(self.main.values())
            )
            if self.stopping_as is not None and computed in TERMINAL_PHASES:
                return self.stopping_as
            return computed

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                phase=self.phase(),
                reason=self.reason,
                message=self.message,
                init_containers=[s.report() for s in self.init.values()],
                containers=[s.report() for s in self.main.values()],
            )
