"""Ships a container's stdout and stderr to its CloudWatch Logs stream while it runs.

``docker logs --follow --timestamps`` gives every line with Docker's own
timestamp (when the container wrote it), so the events keep their real times
whatever the shipping delay; the stream is the one
:meth:`orca.aws.logs.ContainerLogs.stream_name` names, which is where the
runtime's kubelet API reads ``kubectl logs`` from. Lines are buffered and put
once a second (``ContainerLogs.put`` orders and batches them within the
PutLogEvents limits); a follower ends when the
container exits, and :meth:`LogShipper.finish` returns once every line is put.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import IO, Protocol

from orca.agent.docker import DockerCli, parse_docker_time

log = logging.getLogger(__name__)

_PUT_ATTEMPTS = 5


class LogSink(Protocol):
    """What :class:`orca.aws.logs.ContainerLogs` offers the agent."""

    def stream_name(self, namespace: str, pod: str, uid: str, container: str) -> str: ...

    def ensure_stream(self, name: str) -> None: ...

    def put(self, stream: str, lines: list[tuple[datetime, str]]) -> int: ...


def parse_line(line: bytes) -> tuple[datetime, str] | None:
    """``(timestamp, message)`` from one ``docker logs --timestamps`` line."""
    text = line.decode("utf-8", errors="replace").rstrip("\n")
    stamp, _, message = text.partition(" ")
    when = parse_docker_time(stamp)
    if when is None:
        return None
    return when, message


class LogShipper:
    """Follows one container (one run of it) into one stream."""

    def __init__(
        self,
        docker: DockerCli,
        sink: LogSink,
        *,
        container: str,
        stream: str,
        flush_interval: float = 1.0,
    ) -> None:
        self._docker = docker
        self._sink = sink
        self._container = container
        self._stream = stream
        self._flush_interval = flush_interval
        self._buffer: list[tuple[datetime, str]] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        process = self._docker.follow_logs(self._container)
        readers = [
            threading.Thread(target=self._read, args=(pipe,), daemon=True)
            for pipe in (process.stdout, process.stderr)
            if pipe is not None
        ]
        for reader in readers:
            reader.start()

        def wait_readers() -> None:
            for reader in readers:
                reader.join()
            process.wait()
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
            self._done.set()

        waiter = threading.Thread(target=wait_readers, daemon=True)
        flusher = threading.Thread(target=self._flush_loop, daemon=True, name="logs-flush")
        self._threads = [waiter, flusher]
        waiter.start()
        flusher.start()

    def finish(self, timeout: float = 30.0) -> bool:
        """Waits for the follower to end and the last lines to be put."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _read(self, pipe: IO[bytes]) -> None:
        for line in pipe:
            event = parse_line(line)
            if event is not None:
                with self._lock:
                    self._buffer.append(event)

    def _flush_loop(self) -> None:
        while not self._done.wait(self._flush_interval):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            events, self._buffer = sorted(self._buffer, key=lambda e: e[0]), []
        if events:
            self._put(events)

    def _put(self, batch: list[tuple[datetime, str]]) -> None:
        delay = 0.5
        for attempt in range(1, _PUT_ATTEMPTS + 1):
            try:
                self._sink.put(self._stream, batch)
                return
            # Shipping logs is best effort next to running the pod: any failure is retried.
            except Exception as e:
                log.warning(
                    "putting %d log events to %s failed (attempt %d/%d): %s",
                    len(batch),
                    self._stream,
                    attempt,
                    _PUT_ATTEMPTS,
                    e,
                )
                time.sleep(delay)
                delay *= 2
        log.error(
            "dropped %d log events of %s after %d attempts", len(batch), self._stream, _PUT_ATTEMPTS
        )
