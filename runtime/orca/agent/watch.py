"""The agent's safety nets besides the deadline: spot notices and the dead-man switch.

Each net is a check that returns an :class:`Ending` when the pod must end early:

- :class:`SpotWatch` asks the host (IMDS on EC2) whether EC2 is reclaiming this
  spot instance. It runs only on spot instances, every 5 s: the notice comes
  about two minutes ahead, so the pod keeps nearly all of them to stop.
- :class:`DeadManSwitch` reads the runtime's heartbeat (:mod:`orca.heartbeat`)
  and ends the pod once the runtime has been silent longer than its lease, so an
  instance nobody watches any more does not bill until its deadline. A read that
  fails (S3 unreachable, access denied, no object yet) counts as silence.

:class:`Watch` runs the checks on their schedules in one thread, so a slow IMDS
or S3 never delays the agent's main loop, and hands the first ending to the
agent, which stops the containers within :func:`stop_grace`, reports the pod
``Failed`` with the ending's reason and powers off.

The reasons are the runtime's vocabulary: ``SpotInterrupted`` is also what the
runtime reports when it finds a spot instance reclaimed before its agent could
say so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from orca.agent.host import Host
from orca.aws.errors import AwsError, is_not_found
from orca.heartbeat import Heartbeat, is_silent, silence

log = logging.getLogger(__name__)

SPOT_INTERRUPTED = "SpotInterrupted"
RUNTIME_SILENT = "RuntimeSilent"


@dataclass(frozen=True)
class WatchTimings:
    """How often the nets look, and the time kept for the end; tests shorten them."""

    spot_poll: float = 5.0
    # Kept free before a spot notice's time for the final report, clean-up and power-off.
    spot_reserve: float = 20.0
    # None: as often as :func:`orca.heartbeat.read_interval` says for the lease.
    heartbeat_read: float | None = None
    # How long the agent waits for its pod's bundle before it fails the pod and powers off.
    # The runtime stores it as soon as RunInstances answers, long before the agent starts;
    # a runtime restarted mid-launch stores it when it adopts the instance.
    bundle_wait: float = 600.0


@dataclass(frozen=True)
class Ending:
    """Why the agent ends the pod early, and by when it must be done (None: no hurry)."""

    reason: str
    message: str
    finish_by: datetime | None = None


def stop_grace(pod_grace: int, now: datetime, finish_by: datetime | None, reserve: float) -> int:
    """Seconds between SIGTERM and SIGKILL: the pod's ``terminationGracePeriodSeconds``,
    cut so the containers are gone ``reserve`` seconds before ``finish_by``."""
    if finish_by is None:
        return pod_grace
    left = (finish_by - now).total_seconds() - reserve
    return max(0, min(pod_grace, int(left)))


def short_duration(span: timedelta) -> str:
    """``15m``, ``1h30m``, ``45s``: how Kubernetes users write durations."""
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{seconds}s" if seconds or not (hours or minutes) else "")
    return "".join(parts)


def _timestamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class SpotWatch:
    """Ends the pod when EC2 says it is reclaiming this spot instance."""

    def __init__(self, host: Host, instance_id: str) -> None:
        self.host = host
        self.instance_id = instance_id

    def check(self, now: datetime) -> Ending | None:
        when = self.host.spot_notice()
        if when is None:
            return None
        left = max(0.0, (when - now).total_seconds())
        return Ending(
            SPOT_INTERRUPTED,
            f"Spot interruption: EC2 reclaims spot instance {self.instance_id} at "
            f"{_timestamp(when)} (notice received {_timestamp(now)}, {left:.0f} s ahead); "
            "the agent stops the pod's containers before then",
            finish_by=when,
        )


class HeartbeatSource(Protocol):
    """Where the heartbeat is read: :class:`~orca.aws.heartbeats.HeartbeatStore`."""

    @property
    def url(self) -> str: ...

    def get(self) -> Heartbeat: ...


class DeadManSwitch:
    """Ends the pod when the runtime's heartbeat is older than the lease."""

    def __init__(self, store: HeartbeatSource, lease: timedelta, started: datetime) -> None:
        self.store = store
        self.lease = lease
        self.started = started
        self.last_heard: datetime | None = None
        self._failing = False

    def check(self, now: datetime) -> Ending | None:
        self._read()
        if not is_silent(now, self.last_heard, self.started, self.lease):
            return None
        silent = silence(now, self.last_heard, self.started)
        last = (
            f"last heartbeat {_timestamp(self.last_heard)}"
            if self.last_heard
            else f"no heartbeat since the agent started at {_timestamp(self.started)}"
        )
        return Ending(
            RUNTIME_SILENT,
            f"The ORCA runtime has not been heard from for {short_duration(silent)} ({last}, "
            f"lease {short_duration(self.lease)}); the instance stops itself so it does not "
            "bill unattended",
        )

    def _read(self) -> None:
        try:
            heartbeat = self.store.get()
        except (AwsError, ValueError) as e:
            # Once per spell of failures: the switch reads about once a minute.
            if not self._failing:
                quiet = is_not_found(e) and self.last_heard is None
                log.log(
                    logging.INFO if quiet else logging.WARNING,
                    "no runtime heartbeat (%s); the runtime counts as silent meanwhile",
                    e,
                )
            self._failing = True
            return
        if self._failing:
            log.info("runtime heartbeat readable again: %s", _timestamp(heartbeat.time))
        self._failing = False
        if self.last_heard is None or heartbeat.time > self.last_heard:
            self.last_heard = heartbeat.time


Check = Callable[[datetime], Ending | None]


class Watch:
    """Runs checks, each every so many seconds, until one returns an ending."""

    def __init__(
        self,
        checks: Sequence[tuple[float, Check]],
        *,
        clock: Callable[[], datetime],
        on_ending: Callable[[Ending], None],
    ) -> None:
        self.checks = list(checks)
        self._clock = clock
        self._on_ending = on_ending
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="watch", daemon=True)
        self.ending: Ending | None = None

    def start(self) -> None:
        if self.checks:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        due = [time.monotonic()] * len(self.checks)
        while not self._stop.is_set():
            for index, (interval, check) in enumerate(self.checks):
                if time.monotonic() < due[index]:
                    continue
                due[index] = time.monotonic() + interval
                try:
                    ending = check(self._clock())
                # A check that breaks must not take the agent's other nets with it.
                except Exception:
                    log.exception("a safety check failed; trying again in %.0f s", interval)
                    continue
                if ending is not None:
                    self.ending = ending
                    self._on_ending(ending)
                    return
            self._stop.wait(max(0.0, min(due) - time.monotonic()))
