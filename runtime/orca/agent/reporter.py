"""Sends the pod's status snapshots to the department's SQS queue.

Reports are full snapshots (see :mod:`orca.messages`), so only the newest one
matters: :meth:`StatusReporter.publish` replaces whatever is waiting, and one
sender thread delivers the newest snapshot, retrying with backoff while SQS is
unreachable. Sequences come from the wall clock in milliseconds, kept strictly
increasing, so an agent restarted on the same instance still outnumbers the
reports it sent before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from orca.agent.status import TERMINAL_PHASES, Snapshot
from orca.messages import StatusReport

log = logging.getLogger(__name__)


class ReportQueue(Protocol):
    def send(self, report: StatusReport) -> object: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StatusReporter:
    """Turns snapshots into numbered reports and delivers the newest one."""

    def __init__(
        self,
        queue: ReportQueue,
        *,
        pod_uid: str,
        instance_id: str,
        private_ip: str | None,
        clock: Callable[[], datetime] = _utcnow,
        retry_initial: float = 1.0,
        retry_cap: float = 30.0,
    ) -> None:
        self._queue = queue
        self._pod_uid = pod_uid
        self._instance_id = instance_id
        self._private_ip = private_ip
        self._clock = clock
        self._retry_initial = retry_initial
        self._retry_cap = retry_cap
        self._sequence = 0
        self._pending: StatusReport | None = None
        self._last_content: Snapshot | None = None
        self._sent_sequence = -1
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._send_loop, name="reporter", daemon=True)
        self._thread.start()

    def publish(self, snapshot: Snapshot) -> None:
        """Queues a report of ``snapshot`` unless it says nothing new."""
        with self._condition:
            if snapshot == self._last_content:
                return
            self._last_content = snapshot
            self._sequence = max(self._sequence + 1, int(self._clock().timestamp() * 1000))
            self._pending = StatusReport(
                pod_uid=self._pod_uid,
                instance_id=self._instance_id,
                sequence=self._sequence,
                sent_at=self._clock(),
                phase=snapshot.phase,
                reason=snapshot.reason,
                message=snapshot.message,
                private_ip=self._private_ip,
                init_containers=snapshot.init_containers,
                containers=snapshot.containers,
            )
            log.info(
                "pod %s (report %d)%s",
                snapshot.phase,
                self._sequence,
                f": {snapshot.reason}" if snapshot.reason else "",
            )
            self._condition.notify_all()

    def flush(self, timeout: float) -> bool:
        """Waits until the newest report is delivered; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._sent_sequence < self._sequence:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
            return True

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout=5)

    def _send_loop(self) -> None:
        delay = self._retry_initial
        while True:
            with self._condition:
                while self._pending is None and not self._closed:
                    self._condition.wait()
                if self._pending is None:
                    return
                report = self._pending
            try:
                self._queue.send(report)
            # Any failure is retried: a report lost here would leave the pod's state wrong.
            except Exception as e:
                log.warning(
                    "sending status report %d failed: %s; retrying in %.0fs",
                    report.sequence,
                    e,
                    delay,
                )
                with self._condition:
                    self._condition.wait(delay)
                delay = min(delay * 2, self._retry_cap)
                continue
            delay = self._retry_initial
            with self._condition:
                self._sent_sequence = max(self._sent_sequence, report.sequence)
                if self._pending is report:
                    self._pending = None
                self._condition.notify_all()
            if report.phase in TERMINAL_PHASES:
                log.debug("final report %d delivered", report.sequence)
