"""``kubectl logs`` for an ORCA pod, through the emulator and the runtime's kubelet API.

The test plays the agent on the pod's instance: it writes the container's lines into the
local AWS's CloudWatch Logs stream and sends the status reports to the department's queue,
as the agent does; everything between kubectl and CloudWatch is the real code.
"""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orca import tags
from orca.aws.logs import ContainerLogs, stream_name
from orca.aws.queue import StatusQueue
from orca.messages import ContainerReport, StatusReport
from orca_local.certificates import KubeletPki, issue_client_certificate
from tests.integration.runtime_fixtures import Burst, eventually

pytestmark = pytest.mark.integration

KUBECTL = Path(sys.executable).parent / "kubectl"
START = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {"orca.research/instance-type": "m7i.large"}},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [{"key": tags.BURST_TAINT_KEY, "operator": "Exists"}],
            "containers": [{"name": "main", "image": "busybox", "command": ["train"]}],
        },
    }


class Agent:
    """What the agent on the pod's instance would do: ship lines, report the container."""

    def __init__(self, burst: Burst, pod: dict[str, Any], instance_id: str) -> None:
        meta = pod["metadata"]
        self.logs = ContainerLogs(burst.aws.logs, burst.settings.log_group)
        self.stream = stream_name(meta["namespace"], meta["name"], meta["uid"], "main")
        self.queue = StatusQueue(burst.aws.sqs, burst.settings.status_queue_url)
        self.uid = meta["uid"]
        self.instance_id = instance_id
        self.sequence = 0
        self.logs.ensure_stream(self.stream)

    def write(self, *lines: tuple[datetime, str]) -> None:
        self.logs.put(self.stream, list(lines))

    def report(self, state: str, exit_code: int | None = None) -> None:
        self.sequence += 1
        container = ContainerReport(
            name="main",
            image="busybox",
            state=state,  # type: ignore[arg-type]
            exit_code=exit_code,
            started_at=START,
            finished_at=START + timedelta(minutes=5) if state == "terminated" else None,
            ready=state == "running",
        )
        phase = "Running" if state == "running" else "Succeeded"
        self.queue.send(
            StatusReport(
                pod_uid=self.uid,
                instance_id=self.instance_id,
                sequence=self.sequence,
                sent_at=datetime.now(UTC),
                phase=phase,  # type: ignore[arg-type]
                containers=[container],
            )
        )


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _running_pod(burst: Burst, name: str) -> Agent:
    """Create ``name``, wait for its instance, and have its container start."""
    pod = burst.create(_pod(name))
    instance_id = eventually(
        lambda: ((burst.pod("default", name) or {})["metadata"].get("annotations") or {}).get(
            tags.INSTANCE_ID_ANNOTATION
        ),
        what=f"{name} to get an instance",
    )
    agent = Agent(burst, pod, instance_id)
    agent.report("running")
    eventually(lambda: burst.phase("default", name) == "Running", what=f"{name} Running")
    return agent


def _kubelet_get(port: int, pki: KubeletPki, path: str, cert: tuple[Path, Path] | None) -> Any:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_kubectl_logs_reads_cloudwatch_with_tail_and_timestamps(
    logs_burst: Burst, logs_kubeconfig: Path
) -> None:
    runtime = logs_burst.start(kubelet_port=0)
    assert runtime.kubelet is not None
    node = logs_burst.core.read_node(logs_burst.node)
    assert node.status.daemon_endpoints.kubelet_endpoint.port == runtime.kubelet.port

    agent = _running_pod(logs_burst, "trainer")
    assert _kubectl(logs_kubeconfig, "logs", "trainer").stdout == ""
    agent.write(*[(START + timedelta(seconds=n), f"epoch {n} loss 0.{9 - n}") for n in range(5)])

    everything = _kubectl(logs_kubeconfig, "logs", "trainer")
    tail = _kubectl(logs_kubeconfig, "logs", "trainer", "--tail=2")
    stamped = _kubectl(logs_kubeconfig, "logs", "trainer", "--tail=1", "--timestamps")
    limited = _kubectl(logs_kubeconfig, "logs", "trainer", "--limit-bytes=7")

    assert everything.stdout.splitlines() == [f"epoch {n} loss 0.{9 - n}" for n in range(5)]
    assert tail.stdout.splitlines() == ["epoch 3 loss 0.6", "epoch 4 loss 0.5"]
    assert stamped.stdout == "2026-12-01T10:00:04.000000000Z epoch 4 loss 0.5\n"
    assert limited.stdout == "epoch 0"


def test_kubectl_logs_follow_streams_until_the_container_terminates(
    logs_burst: Burst, logs_kubeconfig: Path
) -> None:
    logs_burst.start(kubelet_port=0)
    agent = _running_pod(logs_burst, "follower")
    agent.write((START, "starting"))

    seen: list[str] = []
    with subprocess.Popen(
        [str(KUBECTL), "--kubeconfig", str(logs_kubeconfig), "logs", "-f", "follower"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as follow:
        reader = threading.Thread(target=lambda: seen.extend(follow.stdout or []), daemon=True)
        reader.start()
        try:
            eventually(lambda: seen == ["starting\n"], what="the first line through -f")
            agent.write((START + timedelta(seconds=1), "epoch 1 done"))
            eventually(lambda: len(seen) == 2, what="a line written during the follow")
            assert follow.poll() is None, "the follow ended while the container still runs"

            agent.write((START + timedelta(seconds=2), "finished"))
            agent.report("terminated", exit_code=0)
            follow.wait(timeout=30)
        finally:
            if follow.poll() is None:
                follow.kill()
            reader.join(timeout=5)

    assert follow.returncode == 0, seen
    assert seen == ["starting\n", "epoch 1 done\n", "finished\n"]


def test_logs_stay_readable_after_the_instance_is_gone(
    logs_burst: Burst, logs_kubeconfig: Path
) -> None:
    logs_burst.start(kubelet_port=0)
    agent = _running_pod(logs_burst, "done")
    agent.write((START, "result: 42"))
    agent.report("terminated", exit_code=0)

    eventually(lambda: logs_burst.phase("default", "done") == "Succeeded", what="Succeeded")
    eventually(
        lambda: all(not i.live for i in logs_burst.instances(agent.uid)),
        what="the instance to be terminated",
    )

    assert _kubectl(logs_kubeconfig, "logs", "done").stdout == "result: 42\n"


def test_unknown_container_and_pending_pod_get_clear_errors(
    logs_burst: Burst, logs_kubeconfig: Path
) -> None:
    logs_burst.start(kubelet_port=0)
    _running_pod(logs_burst, "known")
    logs_burst.create(_pod("pending"))

    waiting = _kubectl(logs_kubeconfig, "logs", "pending")
    wrong = _kubectl(logs_kubeconfig, "logs", "known", "-c", "sidecar")

    assert waiting.returncode != 0
    assert 'container "main" in pod "pending" is waiting to start' in waiting.stderr
    assert wrong.returncode != 0
    assert "container sidecar is not valid for pod known" in wrong.stderr


def test_kubelet_api_refuses_clients_without_an_allowed_certificate(
    logs_burst: Burst, kubelet_pki: KubeletPki, tmp_path: Path
) -> None:
    runtime = logs_burst.start(kubelet_port=0)
    assert runtime.kubelet is not None
    port = runtime.kubelet.port
    _running_pod(logs_burst, "guarded")
    path = "/containerLogs/default/guarded/main"
    stranger = issue_client_certificate(
        kubelet_pki,
        "jane",
        "researchers",
        cert_path=tmp_path / "jane.crt",
        key_path=tmp_path / "jane.key",
    )
    apiserver = (kubelet_pki.apiserver_client_cert, kubelet_pki.apiserver_client_key)

    assert _kubelet_get(port, kubelet_pki, path, cert=None) == (401, "Unauthorized\n")
    status, message = _kubelet_get(port, kubelet_pki, path, cert=stranger)
    assert status == 403
    assert "user=jane" in message
    assert _kubelet_get(port, kubelet_pki, path, cert=apiserver) == (200, "")
    assert _kubelet_get(port, kubelet_pki, "/healthz", cert=None) == (200, "ok\n")
