"""A work queue of keys, in the manner of client-go's rate-limited work queue.

A key is queued at most once however often it is added; a key being processed
is never handed to a second worker, and if it is added meanwhile it is processed
again afterwards. Failed keys come back after an exponential backoff with
jitter; ``forget`` resets a key's backoff once it succeeds.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Callable


class WorkQueue:
    def __init__(
        self,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock
        self._ready: list[str] = []
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []
        # Keys told to wait (defer): not to be acted on before these times.
        self._not_before: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._sequence = 0
        self._shutdown = False
        self._cond = threading.Condition()

    def add(self, key: str) -> None:
        with self._cond:
            if self._shutdown:
                return
            if key in self._processing:
                self._dirty.add(key)
                return
            if key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        with self._cond:
            self._sequence += 1
            heapq.heappush(self._delayed, (self.clock() + delay, self._sequence, key))
            self._cond.notify()

    def defer(self, key: str, delay: float) -> None:
        """Come back to ``key`` after ``delay`` and not before: until then :meth:`deferred`
        says so, however often the key is queued for other reasons (its own writes, a
        resync)."""
        with self._cond:
            now = self.clock()
            self._not_before = {k: t for k, t in self._not_before.items() if t > now}
            self._not_before[key] = now + delay
        self.add_after(key, delay)

    def deferred(self, key: str) -> bool:
        """Whether ``key`` was told to wait (:meth:`defer`) and its time has not come."""
        with self._cond:
            return self.clock() < self._not_before.get(key, float("-inf"))

    def retry(self, key: str) -> float:
        """Queue ``key`` again after its backoff; returns the delay chosen."""
        with self._cond:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
        delay: float = min(self.max_delay, self.base_delay * 2.0 ** (failures - 1))
        delay *= random.uniform(0.8, 1.2)  # jitter keeps retries of many pods apart
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def in_progress(self, key: str) -> bool:
        """Whether a worker has ``key`` now (between :meth:`get` and :meth:`done`)."""
        with self._cond:
            return key in self._processing

    def failures(self, key: str) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def get(self, timeout: float | None = None) -> str | None:
        """The next key to process, or None on shutdown or timeout. Call ``done`` after."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while True:
                self._promote_due()
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                if self._shutdown:
                    return None
                if deadline is not None and self.clock() >= deadline:
                    return None
                self._cond.wait(self._next_wait(deadline))

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                if key not in self._queued:
                    self._queued.add(key)
                    self._ready.append(key)
                    self._cond.notify()

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def _promote_due(self) -> None:
        now = self.clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)

    def _next_wait(self, deadline: float | None) -> float | None:
        now = self.clock()
        waits = []
        if self._delayed:
            waits.append(self._delayed[0][0] - now)
        if deadline is not None:
            waits.append(deadline - now)
        return max(0.0, min(waits)) if waits else None
