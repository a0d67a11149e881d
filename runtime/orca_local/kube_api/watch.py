"""Watch streams: one JSON event per chunk, resumable from a resourceVersion.

Semantics follow the real server's watch cache. Without a resourceVersion (or with "0") the
stream starts with ADDED for every current object, then follows changes. With one, it replays
the window's events after it; a version older than the window yields an ERROR event carrying
a 410 Expired Status, and the stream ends. BOOKMARK events (when asked for) carry only the
newest resourceVersion, so a client can resume cheaply. ``timeoutSeconds`` ends the stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request
from .objects import Registry
from .routing import Route
from .tables import to_table

Obj = dict[str, Any]
# A real server picks 30-60 minutes when the client gives no timeout.
DEFAULT_TIMEOUT = 1800.0


@dataclass(frozen=True)
class WatchParams:
    resource_version: str
    timeout: float
    bookmarks: bool
    initial_events: bool
    labels: str | None
    fields: str | None
    as_table: bool
    include_object: str


def parse_bool(text: str) -> bool:
    """Booleans in query strings as Go's strconv.ParseBool reads them ("True" from Python)."""
    return text in ("1", "t", "T", "true", "TRUE", "True")


def params(query: dict[str, list[str]], as_table: bool) -> WatchParams:
    def one(key: str, default: str = "") -> str:
        return query.get(key, [default])[-1]

    try:
        timeout = float(one("timeoutSeconds") or DEFAULT_TIMEOUT)
    except ValueError as e:
        raise bad_request(f"invalid timeoutSeconds: {one('timeoutSeconds')}") from e
    return WatchParams(
        resource_version=one("resourceVersion"),
        timeout=timeout,
        bookmarks=parse_bool(one("allowWatchBookmarks")),
        initial_events=parse_bool(one("sendInitialEvents")),
        labels=one("labelSelector") or None,
        fields=one("fieldSelector") or None,
        as_table=as_table,
        include_object=one("includeObject", "Metadata"),
    )


def stream(
    registry: Registry,
    route: Route,
    p: WatchParams,
    send: Callable[[Obj], None],
    bookmark_interval: float,
) -> None:
    """Send watch events until the timeout, a 410, or the server closing."""
    rt = route.rt
    matches = registry.matcher(rt, p.labels, p.fields)
    if route.name:
        by_name = matches
        matches = lambda o: by_name(o) and o["metadata"]["name"] == route.name  # noqa: E731
    deadline = time.monotonic() + p.timeout
    first_table = [True]

    def emit(kind: str, obj: Obj) -> None:
        if p.as_table and kind != "BOOKMARK" and kind != "ERROR":
            table = to_table(
                rt, [obj], obj["metadata"].get("resourceVersion", ""), p.include_object
            )
            if not first_table[0]:
                table["columnDefinitions"] = []
            first_table[0] = False
            obj = table
        send({"type": kind, "object": obj})

    def in_scope(obj: Obj) -> bool:
        ns = obj.get("metadata", {}).get("namespace", "")
        return (route.namespace is None or ns == route.namespace) and bool(matches(obj))

    # Where the stream starts: a snapshot of current objects, or a given resourceVersion.
    if p.resource_version in ("", "0"):
        items, rv = registry.store.items((rt.group, rt.plural), route.namespace)
        for obj in items:
            if in_scope(obj):
                emit("ADDED", obj)
        since = rv
        if p.initial_events and p.bookmarks:
            emit("BOOKMARK", _bookmark(rt.api_version, rt.kind, since, initial_end=True))
    else:
        try:
            since = int(p.resource_version)
        except ValueError as e:
            raise bad_request(f"invalid resource version: {p.resource_version}") from e

    last_sent = time.monotonic()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or registry.store.closed:
            return
        wait = min(remaining, bookmark_interval) if p.bookmarks else remaining
        try:
            events, newest = registry.store.events_since(since, ((rt.group, rt.plural),), wait)
        except ApiError as e:
            send({"type": "ERROR", "object": e.status()})
            return
        for event in events:
            since = event.rv
            if in_scope(event.obj):
                emit(event.type, event.obj)
                last_sent = time.monotonic()
        if not events:
            since = newest
            if p.bookmarks and time.monotonic() - last_sent >= bookmark_interval:
                emit("BOOKMARK", _bookmark(rt.api_version, rt.kind, since))
                last_sent = time.monotonic()


def _bookmark(api_version: str, kind: str, rv: int, initial_end: bool = False) -> Obj:
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": kind, "apiVersion": api_version, "metadata": meta}


def encode(event: Obj) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"
