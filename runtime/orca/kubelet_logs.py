"""What a ``/containerLogs`` request asks for, and how the kubelet writes its answer.

Pure functions for :mod:`orca.kubelet_api`: the PodLogOptions query as the API server
forwards it, the kubelet's line format (``timestamps=true`` prefixes each line with its time
in a fixed nine-digit RFC 3339 form, which clients such as ``kubectl logs --timestamps``
and log collectors parse), ``limitBytes`` cutting, and the container states that decide
whether there is a log to serve and when a follow is over.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from orca.aws.logs import LogLine

Pod = dict[str, Any]
_TRUE = ("1", "t", "T", "true", "TRUE", "True")
_FALSE = ("0", "f", "F", "false", "FALSE", "False")


class BadRequest(Exception):
    """A query the kubelet refuses with 400; the message says which parameter and why."""


@dataclass(frozen=True)
class LogRequest:
    """What a ``/containerLogs`` query asks for."""

    follow: bool = False
    tail_lines: int | None = None
    since: datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


def _boolean(name: str, value: str) -> bool:
    # Go's strconv.ParseBool, which the kubelet's query decoding uses; empty means false.
    if value in _TRUE:
        return True
    if value in _FALSE or value == "":
        return False
    raise BadRequest(f"{name}={value!r} is not a boolean; use true or false")


def _count(name: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError as e:
        raise BadRequest(f"{name}={value!r} is not an integer") from e
    if number < minimum:
        raise BadRequest(f"{name}={number} must be at least {minimum}")
    return number


def parse_log_query(query: str, now: datetime) -> LogRequest:
    """The :class:`LogRequest` in a URL query string; raises :class:`BadRequest`."""
    params = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
    if _boolean("previous", params.get("previous", "")):
        raise BadRequest(
            "previous=true is not supported on ORCA nodes: every run of a container writes to "
            "one CloudWatch Logs stream, so the current log holds the earlier runs too"
        )
    if "sinceSeconds" in params and "sinceTime" in params:
        raise BadRequest("at most one of sinceTime or sinceSeconds may be specified")

    since = None
    if "sinceSeconds" in params:
        since = now - timedelta(seconds=_count("sinceSeconds", params["sinceSeconds"], 1))
    elif "sinceTime" in params:
        try:
            since = datetime.fromisoformat(params["sinceTime"])
        except ValueError as e:
            raise BadRequest(
                f"sinceTime={params['sinceTime']!r} is not an RFC 3339 time "
                "(e.g. 2026-12-01T10:00:00Z)"
            ) from e
        if since.tzinfo is None:
            raise BadRequest(f"sinceTime={params['sinceTime']!r} needs a zone, e.g. a final Z")

    tail = params.get("tailLines")
    limit = params.get("limitBytes")
    return LogRequest(
        follow=_boolean("follow", params.get("follow", "")),
        tail_lines=None if tail is None else _count("tailLines", tail, 0),
        since=since,
        timestamps=_boolean("timestamps", params.get("timestamps", "")),
        limit_bytes=None if limit is None else _count("limitBytes", limit, 1),
    )


def kubelet_timestamp(moment: datetime) -> str:
    """``2026-12-01T10:00:00.123000000Z``: the kubelet's timestamp, nine digits, in UTC."""
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond:06d}000Z"


def format_line(line: LogLine, timestamps: bool) -> bytes:
    text = f"{kubelet_timestamp(line.timestamp)} {line.message}" if timestamps else line.message
    return (text + "\n").encode()


def container_names(pod: Pod) -> list[str]:
    spec = pod.get("spec") or {}
    return [c["name"] for key in ("initContainers", "containers") for c in spec.get(key) or []]


def container_state(pod: Pod, container: str) -> tuple[str, dict[str, Any]]:
    """(``waiting``/``running``/``terminated``, its status) of one container; waiting if unknown."""
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for entry in status.get(key) or []:
            if entry.get("name") == container:
                state = entry.get("state") or {}
                for name in ("terminated", "running", "waiting"):
                    if name in state:
                        return name, entry
                return "waiting", entry
    if status.get("phase") in ("Succeeded", "Failed"):
        return "terminated", {}
    return "waiting", {}


def never_started(pod: Pod, container: str) -> str | None:
    """The waiting reason of a container that has not run yet, else None."""
    state, entry = container_state(pod, container)
    if state != "waiting" or entry.get("restartCount") or entry.get("lastState"):
        return None
    reason = ((entry.get("state") or {}).get("waiting") or {}).get("reason")
    return str(reason or "ContainerCreating")


class Limit:
    """Cuts output after ``limit_bytes``, as the kubelet does (mid-line if need be)."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[: self.left]
        self.left -= len(data)
        return data

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0


class FollowEnd:
    """True once the container is done and a read after that found nothing new."""

    def __init__(self, done: Callable[[], bool]) -> None:
        self._done = done
        self._draining = False
        self.saw_lines = False

    def __call__(self) -> bool:
        # The agent puts a container's last lines before it reports the container ended,
        # so one empty read after the end was seen means the stream is drained.
        if self._draining and not self.saw_lines:
            return True
        self.saw_lines = False
        self._draining = self._draining or self._done()
        return False


def limited(lines: Iterable[LogLine], request: LogRequest) -> bytes:
    limit = Limit(request.limit_bytes)
    parts = []
    for line in lines:
        parts.append(limit.take(format_line(line, request.timestamps)))
        if limit.spent:
            break
    return b"".join(parts)
