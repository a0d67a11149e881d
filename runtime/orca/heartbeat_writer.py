"""The runtime's side of the dead-man switch: rewrite the heartbeat while running.

:class:`HeartbeatWriter` runs one thread that writes the department's heartbeat
(:mod:`orca.heartbeat`) at once and then every lease / 6. A failed write is
logged and tried again at the next beat; it is never fatal, because the lease
leaves room for five failures in a row. A runtime that stops (a rolling update)
leaves the last heartbeat in place: its agents keep their pods for up to a
lease, and the next runtime adopts them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from orca.aws.errors import AwsError
from orca.aws.heartbeats import HeartbeatStore
from orca.heartbeat import Heartbeat, utcnow, write_interval
from orca.logging_setup import FailingLoop

log = logging.getLogger(__name__)


class HeartbeatWriter:
    def __init__(
        self,
        store: HeartbeatStore,
        *,
        cluster: str,
        department: str,
        lease: timedelta,
        clock: Callable[[], datetime] = utcnow,
        on_written: Callable[[datetime], None] = lambda time: None,
        on_failed: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.cluster = cluster
        self.department = department
        self.lease = lease
        self.interval = write_interval(lease)
        self._clock = clock
        self._on_written = on_written
        self._on_failed = on_failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy: bool | None = None
        self.last_written: datetime | None = None

    def start(self) -> None:
        log.info(
            "writing the runtime heartbeat to %s every %.0f s; agents stop their pods after "
            "%.0f s without one",
            self.store.url,
            self.interval.total_seconds(),
            self.lease.total_seconds(),
        )
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def beat(self) -> bool:
        """Writes the heartbeat once; False when the write failed."""
        now = self._clock()
        heartbeat = Heartbeat(
            time=now,
            cluster=self.cluster,
            department=self.department,
            lease_seconds=int(self.lease.total_seconds()),
        )
        try:
            self.store.put(heartbeat)
        except AwsError as e:
            self._on_failed()
            since = self.last_written.isoformat() if self.last_written else "never"
            log.warning(
                "%s; last written %s; trying again in %.0f s (agents stop their pods after "
                "%.0f s without one)",
                e,
                since,
                self.interval.total_seconds(),
                self.lease.total_seconds(),
            )
            self._healthy = False
            return False
        if self._healthy is False:
            log.info("the runtime heartbeat is written again (%s)", self.store.url)
        else:
            log.debug("runtime heartbeat written at %s", now.isoformat())
        self._healthy = True
        self.last_written = now
        self._on_written(now)
        return True

    def _loop(self) -> None:
        interval = self.interval.total_seconds()
        outage = FailingLoop(log, "writing the runtime heartbeat")
        while True:
            try:
                self.beat()
            # The loop must outlive anything one write does; the next beat tries again.
            except Exception as e:
                outage.failed(e, interval)
            else:
                outage.succeeded()
            if self._stop.wait(interval):
                return
