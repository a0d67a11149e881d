"""The kubelet API: log queries, the kubelet's line format, who may call, and what it answers.

The last tests run the real HTTPS server on loopback with certificates from a local CA,
in front of an in-memory log store instead of CloudWatch Logs.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orca.aws.errors import NotFoundError
from orca.aws.logs import LogLine
from orca.kubelet_api import KubeletApi
from orca.kubelet_logs import (
    BadRequest,
    FollowEnd,
    LogRequest,
    format_line,
    kubelet_timestamp,
    limited,
    never_started,
    parse_log_query,
)
from orca.kubelet_tls import authorize, server_context
from orca_local.certificates import KubeletPki, create_kubelet_pki, issue_client_certificate
from tests.unit.helpers import pod, settings

NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
APISERVER = "kube-apiserver-kubelet-client"


def _cert(common_name: str, *organizations: str) -> dict[str, Any]:
    """A peer certificate as ``SSLSocket.getpeercert()`` returns it."""
    subject = [(("organizationName", o),) for o in organizations]
    return {"subject": (*subject, (("commonName", common_name),))}


# Queries.


def test_an_empty_query_asks_for_the_whole_log_once() -> None:
    assert parse_log_query("", NOW) == LogRequest()


def test_kubectl_flags_become_a_log_request() -> None:
    request = parse_log_query(
        "follow=true&tailLines=20&sinceSeconds=3600&timestamps=true&limitBytes=500", NOW
    )

    assert request == LogRequest(
        follow=True,
        tail_lines=20,
        since=NOW - timedelta(hours=1),
        timestamps=True,
        limit_bytes=500,
    )


def test_since_time_is_read_as_rfc3339_with_nanoseconds() -> None:
    request = parse_log_query("sinceTime=2026-11-30T08:15:00.123456789Z", NOW)

    assert request.since == datetime(2026, 11, 30, 8, 15, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("tailLines=-1", "tailLines=-1 must be at least 0"),
        ("tailLines=ten", "tailLines='ten' is not an integer"),
        ("limitBytes=0", "limitBytes=0 must be at least 1"),
        ("follow=yes", "follow='yes' is not a boolean"),
        ("sinceSeconds=60&sinceTime=2026-12-01T09:00:00Z", "at most one of sinceTime"),
        ("sinceTime=yesterday", "is not an RFC 3339 time"),
        ("sinceTime=2026-12-01T09:00:00", "needs a zone"),
        ("previous=true", "previous=true is not supported on ORCA nodes"),
    ],
)
def test_bad_queries_are_refused_saying_which_parameter(query: str, complaint: str) -> None:
    with pytest.raises(BadRequest, match=complaint.replace("(", r"\(")):
        parse_log_query(query, NOW)


# Lines.


def test_timestamps_are_rfc3339_with_nine_digits_in_utc_like_the_kubelet_writes() -> None:
    eastern = datetime(2026, 12, 1, 5, 0, 0, 120000, tzinfo=UTC).astimezone(
        datetime.now().astimezone().tzinfo
    )

    assert kubelet_timestamp(eastern) == "2026-12-01T05:00:00.120000000Z"
    assert format_line(LogLine(NOW, "loss 0.3"), timestamps=True) == (
        b"2026-12-01T10:00:00.000000000Z loss 0.3\n"
    )
    assert format_line(LogLine(NOW, "loss 0.3"), timestamps=False) == b"loss 0.3\n"


def test_limit_bytes_cuts_the_output_even_mid_line() -> None:
    lines = [LogLine(NOW, "first"), LogLine(NOW, "second")]

    assert limited(lines, LogRequest(limit_bytes=8)) == b"first\nse"
    assert limited(lines, LogRequest()) == b"first\nsecond\n"


# Container states.


def test_a_container_that_never_ran_is_waiting_to_start() -> None:
    fresh = pod()
    running = {**pod(), "status": {"containerStatuses": [{"name": "c", "state": {"running": {}}}]}}
    backing_off = {
        **pod(),
        "status": {
            "containerStatuses": [
                {"name": "c", "restartCount": 1, "state": {"waiting": {"reason": "BackOff"}}}
            ]
        },
    }

    assert never_started(fresh, "c") == "ContainerCreating"
    assert never_started(running, "c") is None
    assert never_started(backing_off, "c") is None


def test_a_follow_ends_only_after_one_empty_read_once_the_container_is_done() -> None:
    done = {"value": False}
    ended = FollowEnd(lambda: done["value"])

    assert ended() is False  # running
    done["value"] = True
    assert ended() is False  # done now: read once more
    ended.saw_lines = True
    assert ended() is False  # that read found lines: read again
    assert ended() is True  # that read found nothing: drained


# Who may call.


def test_the_api_server_client_certificate_is_allowed() -> None:
    decision = authorize(_cert(APISERVER, "system:masters"), [APISERVER])

    assert decision.allowed
    assert decision.identity is not None and decision.identity.user == APISERVER


def test_a_caller_without_a_certificate_is_unauthorized() -> None:
    assert authorize(None, [APISERVER]).status == 401


def test_another_identity_is_forbidden_naming_the_user() -> None:
    decision = authorize(_cert("jane", "researchers"), [APISERVER])

    assert decision.status == 403
    assert decision.message == ("Forbidden (user=jane, verb=get, resource=nodes, subresource=log)")


def test_an_allowed_group_admits_its_members() -> None:
    assert authorize(_cert("admin", "system:masters"), ["system:masters"]).allowed


def test_insecure_mode_admits_anyone() -> None:
    assert authorize(None, [APISERVER], insecure=True).allowed


def test_a_serving_certificate_without_a_client_ca_is_refused_at_start(tmp_path: Path) -> None:
    pki = create_kubelet_pki(tmp_path)

    with pytest.raises(ValidationError, match="needs kubelet_client_ca_file"):
        settings(kubelet_tls_cert_file=pki.kubelet_cert, kubelet_tls_key_file=pki.kubelet_key)
    insecure = settings(
        kubelet_tls_cert_file=pki.kubelet_cert,
        kubelet_tls_key_file=pki.kubelet_key,
        kubelet_insecure_allow_any_client=True,
    )
    assert insecure.kubelet_insecure_allow_any_client


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    pki = create_kubelet_pki(tmp_path)

    with pytest.raises(ValidationError, match="go together"):
        settings(kubelet_tls_cert_file=pki.kubelet_cert, kubelet_client_ca_file=pki.ca_cert)


# The server, in front of an in-memory log store.


class MemoryLogs:
    """Streams by name; a missing stream raises NotFoundError as CloudWatch Logs does."""

    def __init__(self) -> None:
        self.streams: dict[str, list[LogLine]] = {}
        self.lock = threading.Lock()

    def read(
        self, stream: str, since: datetime | None = None, tail: int | None = None
    ) -> list[LogLine]:
        with self.lock:
            if stream not in self.streams:
                raise NotFoundError("no such stream", code="ResourceNotFoundException")
            lines = [x for x in self.streams[stream] if since is None or x.timestamp >= since]
        return lines[-tail:] if tail else ([] if tail == 0 else lines)

    def follow(
        self,
        stream: str,
        *,
        stop: Callable[[], bool],
        since: datetime | None = None,
        tail: int | None = None,
        poll_seconds: float = 1.0,
    ) -> Iterator[LogLine]:
        sent = 0
        while not stop():
            with self.lock:
                lines = self.streams.get(stream, [])[sent:]
            sent += len(lines)
            yield from lines
            if not lines:
                threading.Event().wait(poll_seconds)


@pytest.fixture
def pki(tmp_path: Path) -> KubeletPki:
    return create_kubelet_pki(tmp_path / "pki")


@pytest.fixture
def pods() -> dict[tuple[str, str], dict[str, Any]]:
    running = {**pod(), "status": {"containerStatuses": [{"name": "c", "state": {"running": {}}}]}}
    return {("default", "p"): running}


@pytest.fixture
def memory_logs() -> MemoryLogs:
    return MemoryLogs()


@pytest.fixture
def kubelet(
    pki: KubeletPki, pods: dict[tuple[str, str], dict[str, Any]], memory_logs: MemoryLogs
) -> Iterator[KubeletApi]:
    api = KubeletApi(
        node_name="orca-physics",
        context=server_context(pki.kubelet_cert, pki.kubelet_key, pki.ca_cert),
        find_pod=lambda namespace, name: pods.get((namespace, name)),
        logs=memory_logs,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        allowed_clients=[APISERVER],
        follow_poll_seconds=0.05,
    )
    api.start()
    yield api
    api.stop()


def _get(kubelet: KubeletApi, pki: KubeletPki, path: str, cert: bool = True) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert:
        context.load_cert_chain(str(pki.apiserver_client_cert), str(pki.apiserver_client_key))
    connection = http.client.HTTPSConnection("127.0.0.1", kubelet.port, context=context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_logs_of_a_running_container_are_served_to_the_api_server(
    kubelet: KubeletApi, pki: KubeletPki, memory_logs: MemoryLogs
) -> None:
    stream = "default/p/0b6f1c2e-0000-4000-8000-000000000001/c"
    memory_logs.streams[stream] = [LogLine(NOW, "a"), LogLine(NOW, "b")]

    assert _get(kubelet, pki, "/containerLogs/default/p/c") == (200, "a\nb\n")
    assert _get(kubelet, pki, "/containerLogs/default/p/c?tailLines=1") == (200, "b\n")


def test_a_container_that_wrote_nothing_yet_has_an_empty_log(
    kubelet: KubeletApi, pki: KubeletPki
) -> None:
    assert _get(kubelet, pki, "/containerLogs/default/p/c") == (200, "")


def test_unknown_pods_and_containers_are_not_found_with_a_clear_message(
    kubelet: KubeletApi, pki: KubeletPki
) -> None:
    assert _get(kubelet, pki, "/containerLogs/default/gone/c") == (
        404,
        'pod "default/gone" is not on node orca-physics\n',
    )
    assert _get(kubelet, pki, "/containerLogs/default/p/sidecar") == (
        404,
        'container "sidecar" not found in pod "default/p"\n',
    )


def test_exec_is_not_implemented_yet_and_health_needs_no_certificate(
    kubelet: KubeletApi, pki: KubeletPki
) -> None:
    status, message = _get(kubelet, pki, "/exec/default/p/c?command=sh")

    assert status == 501
    assert "exec is not yet supported" in message
    assert _get(kubelet, pki, "/healthz", cert=False) == (200, "ok\n")


def test_a_caller_without_a_certificate_gets_401_and_a_stranger_403(
    kubelet: KubeletApi, pki: KubeletPki, tmp_path: Path
) -> None:
    cert, key = issue_client_certificate(
        pki, "jane", cert_path=tmp_path / "jane.crt", key_path=tmp_path / "jane.key"
    )
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    context.load_cert_chain(str(cert), str(key))
    connection = http.client.HTTPSConnection("127.0.0.1", kubelet.port, context=context)
    connection.request("GET", "/containerLogs/default/p/c")
    response = connection.getresponse()
    stranger = response.status, response.read().decode()
    connection.close()

    assert _get(kubelet, pki, "/containerLogs/default/p/c", cert=False) == (401, "Unauthorized\n")
    assert stranger[0] == 403
    assert "user=jane" in stranger[1]


def test_follow_ends_when_the_container_terminates_after_the_last_lines(
    kubelet: KubeletApi,
    pki: KubeletPki,
    pods: dict[tuple[str, str], dict[str, Any]],
    memory_logs: MemoryLogs,
) -> None:
    stream = "default/p/0b6f1c2e-0000-4000-8000-000000000001/c"
    memory_logs.streams[stream] = [LogLine(NOW, "one")]
    result: list[tuple[int, str]] = []
    follower = threading.Thread(
        target=lambda: result.append(_get(kubelet, pki, "/containerLogs/default/p/c?follow=1"))
    )
    follower.start()

    with memory_logs.lock:
        memory_logs.streams[stream].append(LogLine(NOW, "two"))
    pods[("default", "p")] = {
        **pods[("default", "p")],
        "status": {"containerStatuses": [{"name": "c", "state": {"terminated": {}}}]},
    }
    follower.join(timeout=10)

    assert not follower.is_alive(), "the follow did not end after the container terminated"
    assert result == [(200, "one\ntwo\n")]
