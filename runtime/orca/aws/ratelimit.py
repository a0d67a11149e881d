"""Pacing EC2 calls below the account's shared request limits.

EC2 throttles each account per region with token buckets (EC2 API reference,
"Request throttling"): RunInstances holds 5 tokens refilled at 2 per second,
TerminateInstances 100 at 5 per second, the Describe* actions 100 at 20 per
second. Those buckets belong to the whole account, not to ORCA: the console,
CI pipelines, other controllers and people's scripts draw from them too. A
runtime that spends the whole bucket makes everyone else's calls fail with
``RequestLimitExceeded``. So ORCA keeps its own bucket per API that is a share
(by default half) of the account's, in both size and refill rate, and waits for
a token before each call instead of learning the limit from errors. botocore's
adaptive retry still handles the throttling that happens anyway.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class BucketLimit:
    """One account bucket as EC2 documents it."""

    capacity: int
    refill_per_second: float


# The account's EC2 buckets ORCA draws from, per API (EC2 API reference, "Request throttling").
EC2_ACCOUNT_LIMITS: Mapping[str, BucketLimit] = {
    "RunInstances": BucketLimit(5, 2.0),
    "TerminateInstances": BucketLimit(100, 5.0),
    "Describe": BucketLimit(100, 20.0),
}
# The category of APIs that are not listed above.
_DEFAULT_CATEGORY = "Describe"

DEFAULT_SHARE = 0.5


class TokenBucket:
    """A thread-safe token bucket: ``capacity`` tokens, refilled continuously."""

    def __init__(
        self,
        capacity: float,
        refill_per_second: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if capacity < 1 or refill_per_second <= 0:
            raise ValueError(
                f"a token bucket needs capacity >= 1 and a positive refill rate; "
                f"got {capacity} and {refill_per_second}/s"
            )
        self.capacity = float(capacity)
        self.refill_per_second = float(refill_per_second)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_per_second)
        self._updated = now

    def try_acquire(self) -> bool:
        """Take a token if one is there now."""
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False

    def wait_time(self) -> float:
        """Seconds until a token will be there (0 if one is there now)."""
        with self._lock:
            self._refill()
            return max(0.0, (1 - self._tokens) / self.refill_per_second)

    def acquire(self) -> float:
        """Block until a token is taken; returns the seconds spent waiting."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                delay = (1 - self._tokens) / self.refill_per_second

            # Sleep outside the lock so other threads can refill and compete fairly.
            self._sleep(delay)
            waited += delay


class Pacer:
    """One :class:`TokenBucket` per EC2 API category, sized to ORCA's share of the account."""

    def __init__(
        self,
        limits: Mapping[str, BucketLimit] = EC2_ACCOUNT_LIMITS,
        *,
        share: float = DEFAULT_SHARE,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1]; got {share}")
        self.share = share
        self._buckets = {
            name: TokenBucket(
                max(1, math.floor(limit.capacity * share)),
                limit.refill_per_second * share,
                clock=clock,
                sleep=sleep,
            )
            for name, limit in limits.items()
        }

    def bucket(self, operation: str) -> TokenBucket:
        """The bucket an EC2 operation draws from."""
        if operation in self._buckets:
            return self._buckets[operation]
        if operation.startswith("Describe") and "Describe" in self._buckets:
            return self._buckets["Describe"]
        return self._buckets[_DEFAULT_CATEGORY]

    def acquire(self, operation: str) -> None:
        """Block until ``operation`` may be called."""
        waited = self.bucket(operation).acquire()
        if waited > 0:
            log.debug("paced %s for %.2fs to stay below the account's limit", operation, waited)
