"""Fixtures for tests that run the real agent in this process against Docker and the local AWS.

They are registered for every test in ``tests/conftest.py``; a test module imports the
helpers it needs.

- ``store_pod``: stores a pod's bundle for the test host (:class:`RecordingHost`, whose
  ARN is :data:`AGENT_TEST_ARN`), seeds its images from the local ones and returns the
  agent's settings for it;
- ``run``: runs the agent for such settings to the pod's end, as on an emulated host;
- :func:`reports_for` and :func:`log_lines` read what the runtime would: the status
  reports in the queue and the container logs in CloudWatch Logs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orca import tags
from orca.agent.docker import DockerCli
from orca.agent.main import emulated_options, run_agent
from orca.agent.supervisor import Tuning
from orca.agent.watch import WatchTimings
from orca.aws.bundles import BundleStore
from orca.aws.clients import AwsClients
from orca.aws.logs import ContainerLogs
from orca.aws.queue import StatusQueue
from orca.bootstrap import AgentConfig
from orca.bundle import PodBundle
from orca.messages import StatusReport
from orca_local.envelope import Envelope
from orca_local.images import local_image_for
from tests.unit.helpers import case_documents

FAST = Tuning(backoff_initial=0.5, backoff_cap=1.0, log_flush_interval=0.2)


class RecordingDocker(DockerCli):
    """The real docker CLI, remembering every command line it ran."""

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.argvs: list[list[str]] = []

    def command(self, args: Any) -> list[str]:
        argv = super().command(args)
        self.argvs.append(argv)
        return argv


AGENT_TEST_ARN = "arn:aws:ec2:us-east-1:123456789012:instance/i-0agenttest00000001"


class RecordingHost:
    """An emulated host that remembers being powered off."""

    emulated = True

    def __init__(self) -> None:
        self.shutdowns: list[str] = []

    def instance_id(self) -> str:
        return "i-0agenttest00000001"

    def instance_arn(self) -> str:
        return AGENT_TEST_ARN

    def private_ip(self) -> str | None:
        return "10.64.0.10"

    def spot_notice(self) -> datetime | None:
        return None

    def shutdown(self, reason: str) -> None:
        self.shutdowns.append(reason)


def pod_from_case(filename: str, kind: str = "Pod") -> tuple[str, str, dict[str, Any]]:
    document = next(d for d in case_documents(filename) if d["kind"] == kind)
    metadata = document["metadata"]
    spec = document["spec"]["template"]["spec"] if kind == "Job" else document["spec"]
    return metadata["namespace"], metadata["name"], spec


@pytest.fixture
def store_pod(
    aws_clients: AwsClients, envelope: Envelope, docker_host: str
) -> Callable[..., AgentConfig]:
    """Stores a pod's bundle (images emulated locally) and returns the agent's settings."""

    def store(
        namespace: str,
        name: str,
        spec: dict[str, Any],
        env: dict[str, dict[str, str]] | None = None,
        lifetime: timedelta = timedelta(minutes=10),
    ) -> AgentConfig:
        uid = str(uuid.uuid4())
        bundle = PodBundle(pod_uid=uid, namespace=namespace, name=name, spec=spec, env=env or {})
        BundleStore(aws_clients.s3, envelope.bundle_bucket).put(bundle, AGENT_TEST_ARN)
        docker = DockerCli(docker_host)
        for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
            local = local_image_for(container["image"])
            assert local is not None
            docker.run(["tag", local, container["image"]])
        return AgentConfig(
            region=envelope.region,
            cluster="test-cluster",
            department="physics",
            pod_uid=uid,
            pod=f"{namespace}/{name}",
            bundle_bucket=envelope.bundle_bucket,
            status_queue_url=envelope.status_queue_url,
            log_group=envelope.log_group,
            deadline=datetime.now(UTC) + lifetime,
        )

    return store


@pytest.fixture
def run(aws_clients: AwsClients, docker_host: str) -> Iterator[Callable[..., RecordingHost]]:
    def run_pod(
        config: AgentConfig,
        docker: DockerCli | None = None,
        timings: WatchTimings | None = None,
    ) -> RecordingHost:
        host = RecordingHost()
        run_agent(
            config,
            host,
            clients=aws_clients,
            docker=docker or DockerCli(docker_host),
            options=emulated_options(),
            tuning=FAST,
            timings=timings,
            handle_signals=False,
        )
        return host

    yield run_pod


def reports_for(clients: AwsClients, queue_url: str, pod_uid: str) -> list[StatusReport]:
    """Every report of the pod now in the queue, in sequence order."""
    queue = StatusQueue(clients.sqs, queue_url)
    found: list[StatusReport] = []
    while True:
        received = queue.receive(wait_seconds=0)
        if not received:
            return sorted(found, key=lambda report: report.sequence)
        queue.delete([r.receipt_handle for r in received])
        found += [r.report for r in received if r.report.pod_uid == pod_uid]


def log_lines(clients: AwsClients, config: AgentConfig, container: str) -> list[str]:
    logs = ContainerLogs(clients.logs, config.log_group)
    namespace, name = config.pod.split("/")
    stream = logs.stream_name(namespace, name, config.pod_uid, container)
    return [line.message for line in logs.read(stream)]


def containers_of(docker_host: str, pod_uid: str) -> list[str]:
    listing = DockerCli(docker_host).run(
        ["ps", "--all", "--quiet", "--filter", f"label={tags.POD_UID}={pod_uid}"]
    )
    return listing.stdout.split()
