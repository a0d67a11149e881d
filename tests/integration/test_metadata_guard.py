"""The bootstrap's metadata guard on this machine's kernel, with the real agent and Docker.

On an instance the guard refuses 169.254.169.254 to the pod's containers. Here the same
script is rendered for a loopback address (127.254.x.y, a new one each run, where a small
HTTP server on port 80 stands in for IMDS, so nothing leaves the machine), installed with
this machine's iptables, and a pod run by the agent tries to reach the stand-in: before
the guard it can, with the guard it is refused, while this test's own process (outside
the pods' cgroup, like the agent) still can. The guard's own probe is tried too: with an
``iptables`` that does nothing, the probe reaches the stand-in and the guard fails. The
rule for the run's address is removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orca.agent.docker import DockerCli
from orca.aws.clients import AwsClients
from orca.bootstrap import POD_SLICE, AgentConfig, render_metadata_guard
from tests.integration.agent_fixtures import RecordingHost, log_lines, reports_for

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.aws_fixtures", "tests.integration.docker_fixtures"]

# One address per run, so runs on one machine never share (or remove) each other's rule.
STAND_IN = f"127.254.{secrets.randbelow(254) + 1}.{secrets.randbelow(254) + 1}"
TOKEN = b"AQAEAimdsStandInToken=="


class _Imds(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(TOKEN)))
        self.end_headers()
        self.wfile.write(TOKEN)


@pytest.fixture
def imds_stand_in() -> Iterator[int]:
    """The stand-in's port on STAND_IN: 80, as IMDS's, where the guard's probe knocks."""
    server = ThreadingHTTPServer((STAND_IN, 80), _Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def _rule() -> list[str]:
    return [
        *("OUTPUT", "-d", f"{STAND_IN}/32", "-m", "cgroup", "--path", POD_SLICE),
        *("-m", "comment", "--comment", "orca-imds-guard", "-j", "REJECT"),
    ]


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Runs the guard for the stand-in address as the bootstrap's runner does."""
    script = tmp_path / "guard-metadata.sh"
    script.write_text(render_metadata_guard(address=STAND_IN))

    def install(path: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": path or os.environ["PATH"]}
        return subprocess.run(
            ["/bin/bash", str(script)], capture_output=True, text=True, timeout=30, env=env
        )

    yield install
    while subprocess.run(["iptables", "-w", "-D", *_rule()], capture_output=True).returncode == 0:
        pass


def _reaching_pod(address: str, port: int) -> tuple[str, str, dict[str, object]]:
    # busybox's nc, as the static busybox's wget cannot resolve names; nc's status decides.
    request = r'printf "GET /latest/meta-data/iam/info HTTP/1.0\r\n\r\n"'
    script = (
        f"if {request} | nc -w 5 {address} {port} > /tmp/answer; "
        'then echo "answered $(tail -n 1 /tmp/answer)"; else echo refused; fi'
    )
    spec: dict[str, object] = {
        "restartPolicy": "Never",
        "containers": [{"name": "probe", "image": "busybox:1.36", "command": ["sh", "-c", script]}],
    }
    return "default", f"imds-probe-{uuid.uuid4().hex[:6]}", spec


def _probe(
    port: int,
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
) -> list[str]:
    config = store_pod(*_reaching_pod(STAND_IN, port))
    run(config)
    assert reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1].phase == (
        "Succeeded"
    )
    return log_lines(aws_clients, config, "probe")


def test_pod_containers_are_refused_imds_once_the_guard_is_in_place_and_the_host_is_not(
    imds_stand_in: int,
    guard: Callable[..., subprocess.CompletedProcess[str]],
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
) -> None:
    before = _probe(imds_stand_in, store_pod, run, aws_clients)
    installed = guard()
    again = guard()  # a restarted unit
    after = _probe(imds_stand_in, store_pod, run, aws_clients)

    assert installed.returncode == 0 and again.returncode == 0, installed.stderr + again.stderr
    assert before == [f"answered {TOKEN.decode()}"]
    # nc's complaint (stderr) and the verdict (stdout) may reach the log in either order.
    assert sorted(after) == sorted(
        ["refused", f"nc: can't connect to remote host ({STAND_IN}): Connection refused"]
    )
    rules = subprocess.run(["iptables", "-w", "-S", "OUTPUT"], capture_output=True, text=True)
    assert rules.stdout.count("orca-imds-guard") == 1
    # Outside the pods' cgroup (the agent, the host's services) IMDS still answers.
    url = f"http://{STAND_IN}:{imds_stand_in}/latest/meta-data/iam/info"
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.read() == TOKEN


def test_a_rule_that_does_not_hold_is_caught_by_the_guards_probe(
    imds_stand_in: int,
    guard: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path,
) -> None:
    # An iptables that answers success and installs nothing.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "iptables").write_text("#!/bin/sh\nexit 0\n")
    (fake / "iptables").chmod(0o755)

    done = guard(path=f"{fake}:{os.environ['PATH']}")

    assert done.returncode == 1
    assert f"{STAND_IN} still answers from {POD_SLICE}; the rule does not hold" in done.stderr
    with open("/proc/mounts") as mounts:
        cgroup2 = next(line.split()[1] for line in mounts if line.split()[2] == "cgroup2")
    assert not Path(cgroup2, POD_SLICE, "orca-guard-probe").exists()


def test_the_agent_puts_every_pod_container_in_the_guarded_cgroup(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    docker_host: str,
    aws_clients: AwsClients,
) -> None:
    namespace, name, spec = _reaching_pod(STAND_IN, 9)
    spec["containers"][0]["command"] = ["cat", "/proc/self/cgroup"]  # type: ignore[index]
    config = store_pod(namespace, name, spec)

    run(config, docker=DockerCli(docker_host))

    unified = [line for line in log_lines(aws_clients, config, "probe") if line.startswith("0::")]
    assert unified and unified[0].startswith(f"0::/{POD_SLICE}/")
