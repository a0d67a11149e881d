"""The host's spot notices: IMDSv2 played by a small HTTP server on loopback, and the
emulator's notice file."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orca.agent.host import Ec2Host, EmulatedHost, HostError, host_from_environment

NOTICE = {"action": "terminate", "time": "2026-12-04T07:00:00Z"}
TOKEN = "AQAEAnotherTokenAAAA=="
ARN = "arn:aws-us-gov:ec2:us-gov-west-1:210987654321:instance/i-0123456789abcdef0"
# What IMDS serves at these paths under /latest/, as on an instance in GovCloud.
METADATA = {
    "meta-data/instance-id": "i-0123456789abcdef0",
    "meta-data/services/partition": "aws-us-gov",
    "dynamic/instance-identity/document": json.dumps(
        {
            "accountId": "210987654321",
            "region": "us-gov-west-1",
            "instanceId": "i-0123456789abcdef0",
            "instanceType": "p5.48xlarge",
            "availabilityZone": "us-gov-west-1a",
        }
    ),
}


class FakeImds(ThreadingHTTPServer):
    """IMDSv2 as EC2 serves it: a token from a PUT, then GETs that must carry it.

    ``notice`` is the spot/instance-action document once EC2 has decided to reclaim the
    instance; until then the path answers 404, as on EC2.
    """

    notice: dict[str, str] | None = None
    raw_notice: bytes | None = None
    token_status = 200
    requests: list[tuple[str, str, str | None]]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeImds

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        self.server.requests.append(("PUT", self.path, None))
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if self.path != "/latest/api/token" or not ttl:
            self._answer(400, b"")
        elif self.server.token_status != 200:
            self._answer(self.server.token_status, b"")
        else:
            self._answer(200, TOKEN.encode())

    def do_GET(self) -> None:
        token = self.headers.get("X-aws-ec2-metadata-token")
        self.server.requests.append(("GET", self.path, token))
        if token != TOKEN:
            self._answer(401, b"")
        elif self.path.removeprefix("/latest/") in METADATA:
            self._answer(200, METADATA[self.path.removeprefix("/latest/")].encode())
        elif self.path != "/latest/meta-data/spot/instance-action":
            self._answer(404, b"")
        elif self.server.raw_notice is not None:
            self._answer(200, self.server.raw_notice)
        elif self.server.notice is None:
            self._answer(404, b"<?xml version='1.0'?><title>404 - Not Found</title>")
        else:
            self._answer(200, json.dumps(self.server.notice).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_no_notice_while_imds_answers_404_then_its_time_once_ec2_decides(
    imds: FakeImds,
) -> None:
    host = Ec2Host(imds.url)

    before = host.spot_notice()
    imds.notice = NOTICE
    after = host.spot_notice()

    assert before is None
    assert after == datetime(2026, 12, 4, 7, 0, tzinfo=UTC)
    # IMDSv2: every read is a token PUT, then a GET carrying the token.
    assert [(method, path) for method, path, _ in imds.requests] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/spot/instance-action"),
    ] * 2
    assert all(token == TOKEN for method, _, token in imds.requests if method == "GET")


def test_a_stop_or_hibernate_action_is_an_interruption_too(imds: FakeImds) -> None:
    imds.notice = {"action": "stop", "time": "2026-12-04T07:02:00Z"}

    assert Ec2Host(imds.url).spot_notice() == datetime(2026, 12, 4, 7, 2, tzinfo=UTC)


def test_imds_refusing_the_token_is_logged_once_and_reads_as_no_notice(
    imds: FakeImds, caplog: pytest.LogCaptureFixture
) -> None:
    imds.token_status = 403
    host = Ec2Host(imds.url)

    with caplog.at_level(logging.WARNING, logger="orca.agent.host"):
        answers = [host.spot_notice(), host.spot_notice()]

    assert answers == [None, None]
    assert len(caplog.records) == 1
    assert "IMDSv2 token" in caplog.records[0].getMessage()


def test_a_garbled_notice_is_logged_and_reads_as_no_notice(
    imds: FakeImds, caplog: pytest.LogCaptureFixture
) -> None:
    imds.raw_notice = b"{not json"

    with caplog.at_level(logging.WARNING, logger="orca.agent.host"):
        assert Ec2Host(imds.url).spot_notice() is None

    assert "not a spot instance-action document" in caplog.text


def test_unreachable_imds_reads_as_no_notice(caplog: pytest.LogCaptureFixture) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    host = Ec2Host("http://127.0.0.1:9", timeout=0.5)

    with caplog.at_level(logging.WARNING, logger="orca.agent.host"):
        assert host.spot_notice() is None

    assert "no spot notice is assumed" in caplog.text


def test_the_instance_arn_is_built_from_the_identity_document_and_partition(
    imds: FakeImds,
) -> None:
    host = Ec2Host(imds.url)

    assert host.instance_arn() == ARN
    assert all(token == TOKEN for method, _, token in imds.requests if method == "GET")


def test_the_emulator_host_needs_the_instance_arn(tmp_path: Path) -> None:
    environment = {
        "ORCA_AGENT_INSTANCE_ID": "i-0123456789abcdef0",
        "ORCA_AGENT_POWEROFF_FILE": str(tmp_path / "poweroff"),
    }

    with pytest.raises(HostError, match="ORCA_AGENT_INSTANCE_ARN"):
        host_from_environment(environment)
    host = host_from_environment({**environment, "ORCA_AGENT_INSTANCE_ARN": ARN})
    assert host.instance_arn() == ARN


def test_emulated_host_reads_the_notice_file_the_emulator_writes(tmp_path: Path) -> None:
    notice_file = tmp_path / "spot-instance-action"
    host = host_from_environment(
        {
            "ORCA_AGENT_INSTANCE_ID": "i-0123456789abcdef0",
            "ORCA_AGENT_INSTANCE_ARN": ARN,
            "ORCA_AGENT_POWEROFF_FILE": str(tmp_path / "poweroff"),
            "ORCA_AGENT_SPOT_NOTICE_FILE": str(notice_file),
        }
    )

    before = host.spot_notice()
    notice_file.write_text(json.dumps(NOTICE))

    assert isinstance(host, EmulatedHost)
    assert before is None
    assert host.spot_notice() == datetime(2026, 12, 4, 7, 0, tzinfo=UTC)


@pytest.fixture
def poweroff_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``systemctl`` and ``shutdown`` that record their arguments: this host stays up."""
    record = tmp_path / "poweroff-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("systemctl", "shutdown"):
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {record}\n')
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    return record


def test_in_the_bootstraps_container_the_agent_leaves_power_off_to_the_bootstrap(
    poweroff_commands: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = host_from_environment({"ORCA_AGENT_POWEROFF_BY_BOOTSTRAP": "1"})

    with caplog.at_level(logging.INFO, logger="orca.agent.host"):
        host.shutdown("pod ns/p ended Succeeded")

    assert isinstance(host, Ec2Host) and host.bootstrap_powers_off
    assert not poweroff_commands.exists()
    assert "leaving power-off to the bootstrap" in caplog.text


def test_on_the_host_itself_the_agent_powers_off(poweroff_commands: Path) -> None:
    host = host_from_environment({})

    host.shutdown("pod ns/p ended Succeeded")

    assert isinstance(host, Ec2Host) and not host.bootstrap_powers_off
    assert poweroff_commands.read_text() == "systemctl poweroff\n"


def test_the_emulator_host_ignores_the_bootstraps_variable(tmp_path: Path) -> None:
    poweroff_file = tmp_path / "poweroff"
    host = host_from_environment(
        {
            "ORCA_AGENT_INSTANCE_ID": "i-0123456789abcdef0",
            "ORCA_AGENT_INSTANCE_ARN": ARN,
            "ORCA_AGENT_POWEROFF_FILE": str(poweroff_file),
            "ORCA_AGENT_POWEROFF_BY_BOOTSTRAP": "1",
        }
    )

    host.shutdown("pod ns/p ended Failed")

    assert isinstance(host, EmulatedHost)
    assert poweroff_file.read_text() == "pod ns/p ended Failed\n"
