"""Container logs in CloudWatch Logs: shipped by the agent, served by the kubelet API.

One log stream per container, named ``<namespace>/<pod>/<uid>/<container>`` in the
department's log group, so ``kubectl logs`` keeps working after the instance is
gone, and a recreated pod of the same name (new uid) never mixes with the old.

PutLogEvents limits (CloudWatch Logs API reference) shape :meth:`ContainerLogs.put`:
a batch holds at most 10,000 events and 1,048,576 bytes, counted as each
message's UTF-8 size plus 26 bytes; its events are in time order and span at
most 24 hours; one event is at most 256 KiB (longer lines are cut, saying so).
Sequence tokens are no longer needed and are not sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from orca.aws.errors import AwsError, NotFoundError, aws_call

log = logging.getLogger(__name__)

BATCH_MAX_EVENTS = 10_000
BATCH_MAX_BYTES = 1_048_576
EVENT_OVERHEAD_BYTES = 26
EVENT_MAX_BYTES = 256 * 1024 - EVENT_OVERHEAD_BYTES
BATCH_MAX_SPAN = timedelta(hours=24)
GET_MAX_EVENTS = 10_000
_TRUNCATED = " [truncated by ORCA: CloudWatch Logs events are at most 256 KiB]"


class LogLine(NamedTuple):
    timestamp: datetime
    message: str


def stream_name(pod_namespace: str, pod_name: str, pod_uid: str, container: str) -> str:
    """The log stream of one container of one pod."""
    return f"{pod_namespace}/{pod_name}/{pod_uid}/{container}"


class ContainerLogs:
    """Write and read container log streams in one log group."""

    def __init__(
        self,
        logs_client: Any,
        group: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._logs = logs_client
        self.group = group
        self._sleep = sleep

    stream_name = staticmethod(stream_name)

    def ensure_stream(self, stream: str) -> None:
        """Create the stream unless it exists."""
        try:
            with aws_call(f"creating log stream {stream} in {self.group}"):
                self._logs.create_log_stream(logGroupName=self.group, logStreamName=stream)
        except AwsError as e:
            if e.code != "ResourceAlreadyExistsException":
                raise

    def put(self, stream: str, lines: Iterable[tuple[datetime, str]]) -> int:
        """Append lines to a stream, in as few calls as the limits allow; returns events sent."""
        events: list[dict[str, Any]] = [
            {"timestamp": _millis(ts), "message": _fit(message)} for ts, message in lines
        ]
        events.sort(key=lambda event: int(event["timestamp"]))
        sent = 0
        for batch in _batches(events):
            with aws_call(f"shipping {len(batch)} log line(s) to {self.group}/{stream}"):
                response = self._logs.put_log_events(
                    logGroupName=self.group, logStreamName=stream, logEvents=batch
                )
            rejected = response.get("rejectedLogEventsInfo")
            if rejected:
                log.warning("CloudWatch Logs rejected some lines of %s: %s", stream, rejected)
            sent += len(batch)
        return sent

    def read(
        self,
        stream: str,
        since: datetime | None = None,
        tail: int | None = None,
        start_from_head: bool = True,
    ) -> list[LogLine]:
        """Lines of a stream in time order: all since ``since``, or the last ``tail`` of them."""
        params: dict[str, Any] = {"logGroupName": self.group, "logStreamName": stream}
        if since is not None:
            params["startTime"] = _millis(since)
        if tail is not None or not start_from_head:
            # Reading from the end returns the newest events, still in time order.
            params.update(startFromHead=False, limit=min(tail or GET_MAX_EVENTS, GET_MAX_EVENTS))
            if tail == 0:
                return []
            page = self._get(params, stream)
            return [_line(event) for event in page.get("events", [])]

        lines: list[LogLine] = []
        params["startFromHead"] = True
        while True:
            page = self._get(params, stream)
            lines.extend(_line(event) for event in page.get("events", []))
            token = page.get("nextForwardToken")
            # The forward token repeats once the end of the stream is reached.
            if not token or token == params.get("nextToken"):
                return lines
            params["nextToken"] = token

    def follow(
        self,
        stream: str,
        *,
        stop: Callable[[], bool],
        since: datetime | None = None,
        tail: int | None = None,
        poll_seconds: float = 1.0,
    ) -> Iterator[LogLine]:
        """Lines as they arrive, until ``stop()`` is true; a missing stream is waited for."""
        params: dict[str, Any] = {"logGroupName": self.group, "logStreamName": stream}
        if tail is not None:
            try:
                first = self.read(stream, since=since, tail=tail)
            except NotFoundError:
                first = []
            yield from first
            if first:
                params["startTime"] = _millis(first[-1].timestamp) + 1
        if since is not None and "startTime" not in params:
            params["startTime"] = _millis(since)
        params["startFromHead"] = True

        while not stop():
            try:
                page = self._get(params, stream)
            except NotFoundError:
                page = {}
            events = page.get("events", [])
            for event in events:
                yield _line(event)
            token = page.get("nextForwardToken")
            if token:
                params["nextToken"] = token
            if not events:
                self._sleep(poll_seconds)

    def _get(self, params: dict[str, Any], stream: str) -> dict[str, Any]:
        with aws_call(f"reading log stream {self.group}/{stream}"):
            page: dict[str, Any] = self._logs.get_log_events(**params)
        return page


def _batches(events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    span = int(BATCH_MAX_SPAN.total_seconds() * 1000)
    for event in events:
        event_size = len(event["message"].encode()) + EVENT_OVERHEAD_BYTES
        full = (
            len(batch) >= BATCH_MAX_EVENTS
            or size + event_size > BATCH_MAX_BYTES
            or (batch and event["timestamp"] - batch[0]["timestamp"] >= span)
        )
        if full:
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += event_size
    if batch:
        yield batch


def _fit(message: str) -> str:
    # CloudWatch Logs rejects empty messages.
    message = message or " "
    data = message.encode()
    if len(data) <= EVENT_MAX_BYTES:
        return message
    room = EVENT_MAX_BYTES - len(_TRUNCATED.encode())
    return data[:room].decode(errors="ignore") + _TRUNCATED


def _millis(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def _line(event: dict[str, Any]) -> LogLine:
    return LogLine(datetime.fromtimestamp(event["timestamp"] / 1000, UTC), event["message"])
