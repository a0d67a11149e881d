"""The object store: what etcd plus the watch cache are to a real API server.

One lock guards every bucket, the global resourceVersion counter and a bounded window of
watch events. Watchers wait on the lock's condition and read the window from the
resourceVersion they last saw; one older than the window gets 410 Gone, as after etcd
compaction. Objects are plain JSON dicts, copied in and out so callers never share state.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .errors import gone

Obj = dict[str, Any]
BucketKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped kinds


@dataclass(frozen=True)
class WatchEvent:
    """One change, kept in the window: the object as it was right after the change."""

    rv: int
    bucket: BucketKey
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj


class Store:
    """Buckets of objects, one increasing resourceVersion, and the watch event window."""

    def __init__(self, window: int = 1000) -> None:
        self.cond = threading.Condition()
        self._rv = 0
        self._buckets: dict[BucketKey, dict[ObjKey, Obj]] = {}
        self._events: deque[WatchEvent] = deque()
        self._window = window
        # The newest resourceVersion whose event has left the window; a watch from an
        # older version can no longer be served.
        self._compacted = 0
        self.closed = False

    @property
    def resource_version(self) -> int:
        with self.cond:
            return self._rv

    def next_rv(self) -> int:
        """Reserve the next resourceVersion (caller holds ``cond``)."""
        self._rv += 1
        return self._rv

    def get(self, bucket: BucketKey, key: ObjKey) -> Obj | None:
        with self.cond:
            obj = self._buckets.get(bucket, {}).get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, bucket: BucketKey, namespace: str | None) -> tuple[list[Obj], int]:
        """Objects of a bucket (in one namespace, or all), sorted as etcd keys are, and the
        resourceVersion the list is consistent with."""
        with self.cond:
            items = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._buckets.get(bucket, {}).items())
                if namespace is None or ns == namespace
            ]
            return items, self._rv

    def write(self, bucket: BucketKey, key: ObjKey, obj: Obj, event: str) -> Obj:
        """Store (ADDED/MODIFIED) or remove (DELETED) an object under a new resourceVersion
        and record the watch event. Returns the stored object."""
        with self.cond:
            rv = self.next_rv()
            stored = copy.deepcopy(obj)
            stored.setdefault("metadata", {})["resourceVersion"] = str(rv)
            objects = self._buckets.setdefault(bucket, {})
            if event == "DELETED":
                objects.pop(key, None)
            else:
                objects[key] = stored
            self._record(WatchEvent(rv, bucket, event, stored))
            return copy.deepcopy(stored)

    def _record(self, event: WatchEvent) -> None:
        self._events.append(event)
        while len(self._events) > self._window:
            self._compacted = self._events.popleft().rv
        self.cond.notify_all()

    def events_since(
        self, since: int, buckets: tuple[BucketKey, ...], timeout: float
    ) -> tuple[list[WatchEvent], int]:
        """Events newer than ``since`` for the given buckets, waiting up to ``timeout`` for
        the first one. Returns the events and the newest resourceVersion examined.

        Raises 410 Gone when ``since`` predates the window."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if since < self._compacted:
                    raise gone(f"too old resource version: {since} ({self._compacted + 1})")
                found = [e for e in self._events if e.rv > since and e.bucket in buckets]
                if found or self.closed:
                    return found, max(self._rv, since)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return [], max(self._rv, since)
                self.cond.wait(remaining)

    def close(self) -> None:
        """Wake every watcher so streaming handlers can finish."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()
