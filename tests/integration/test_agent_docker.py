"""The real agent against a real Docker daemon and the local AWS: what a user would check.

Each test stores a pod's bundle in the envelope's bucket, runs the agent (in
this process, or as the emulator's subprocess for an instance launched in the
local EC2), then reads what the runtime would read: the status reports in the
department's queue and the container logs in CloudWatch Logs.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orca import tags
from orca.agent.docker import DockerCli
from orca.agent.main import emulated_options, run_agent
from orca.agent.supervisor import Tuning
from orca.aws.bundles import BundleStore
from orca.aws.clients import AwsClients
from orca.aws.logs import ContainerLogs
from orca.aws.queue import StatusQueue
from orca.bootstrap import AgentConfig, render_user_data
from orca.bundle import PodBundle
from orca.messages import StatusReport
from orca_local.aws import LocalAwsProcess
from orca_local.envelope import Envelope
from orca_local.images import local_image_for
from orca_local.instances import InstanceEmulator
from tests.integration.aws_fixtures import launch
from tests.unit.helpers import case_documents

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.aws_fixtures", "tests.integration.docker_fixtures"]

SECRET = "s3cr3t-not-for-logs-0f9c"
SHA_LINE = "3c1ba78ba93fdf61cb80b6dcb321c92ef633f263dc5e01bea4472e43045472bc  -"
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
    def run_pod(config: AgentConfig, docker: DockerCli | None = None) -> RecordingHost:
        host = RecordingHost()
        run_agent(
            config,
            host,
            clients=aws_clients,
            docker=docker or DockerCli(docker_host),
            options=emulated_options(),
            tuning=FAST,
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


def test_cpu_batch_pod_succeeds_with_its_checksum_in_cloudwatch(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
    docker_host: str,
) -> None:
    config = store_pod(*pod_from_case("02-cpu-batch.yaml"))

    host = run(config)

    reports = reports_for(aws_clients, config.status_queue_url, config.pod_uid)
    final = reports[-1]
    assert final.phase == "Succeeded"
    (align,) = final.containers
    assert (align.state, align.reason, align.exit_code) == ("terminated", "Completed", 0)
    assert align.started_at is not None and align.finished_at is not None
    assert [r.phase for r in reports][:1] == ["Pending"]
    assert any(r.phase == "Running" or r.containers[0].state == "running" for r in reports)
    assert [r.sequence for r in reports] == sorted({r.sequence for r in reports})
    assert final.private_ip == "10.64.0.10"
    assert log_lines(aws_clients, config, "align") == [SHA_LINE]
    assert host.shutdowns == ["pod biology/genome-align-chunk-17 ended Succeeded"]
    assert containers_of(docker_host, config.pod_uid) == []


def test_failing_step_reports_error_exit_3_and_its_stderr(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
) -> None:
    config = store_pod(*pod_from_case("03-failing-step.yaml"))

    host = run(config)

    final = reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1]
    assert final.phase == "Failed"
    (qc,) = final.containers
    assert (qc.state, qc.reason, qc.exit_code) == ("terminated", "Error", 3)
    assert log_lines(aws_clients, config, "qc") == ["qc: 3 samples below threshold"]
    assert len(host.shutdowns) == 1


def test_init_container_runs_first_and_the_secret_stays_inside_the_container(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
    docker_host: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    namespace, _, spec = pod_from_case("04-job-with-init-config-secret.yaml", kind="Job")
    env = {"md": {"STEPS": "5000", "WANDB_API_KEY": SECRET}}
    config = store_pod(namespace, "md-simulation-x7k2p", spec, env)
    docker = RecordingDocker(docker_host)
    caplog.set_level(logging.DEBUG)

    run(config, docker)

    final = reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1]
    assert final.phase == "Succeeded"
    (init,) = final.init_containers
    (md,) = final.containers
    assert init.finished_at is not None and md.started_at is not None
    assert init.finished_at <= md.started_at
    assert log_lines(aws_clients, config, "md") == ["inputs ready", "steps=5000"]
    assert not any(SECRET in arg for argv in docker.argvs for arg in argv)
    assert SECRET not in render_user_data(config)
    assert SECRET not in caplog.text
    assert SECRET not in final.to_json()


def test_container_over_its_memory_limit_is_oomkilled_137(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
) -> None:
    spec = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "hog",
                "image": "public.ecr.aws/docker/library/busybox:1.36",
                "command": ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo no"],
                "resources": {"limits": {"memory": "16Mi"}},
            }
        ],
    }
    config = store_pod("default", "memory-hog", spec)

    run(config)

    final = reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1]
    assert final.phase == "Failed"
    (hog,) = final.containers
    assert (hog.reason, hog.exit_code) == ("OOMKilled", 137)


def test_deadline_stops_the_containers_and_fails_the_pod(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
) -> None:
    spec = {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "forever", "image": "busybox:1.36", "command": ["sleep", "600"]}],
    }
    config = store_pod("default", "too-long", spec, lifetime=timedelta(seconds=4))

    started = time.monotonic()
    host = run(config)

    assert time.monotonic() - started < 20
    final = reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1]
    assert (final.phase, final.reason) == ("Failed", "DeadlineExceeded")
    assert final.containers[0].state == "terminated"
    assert len(host.shutdowns) == 1


def test_failing_container_is_restarted_under_on_failure_with_backoff(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
) -> None:
    # Fails twice, then succeeds: a counter lives in the pod's emptyDir volume.
    script = "n=$(cat /w/n 2>/dev/null || echo 0); echo $((n+1)) > /w/n; [ $n -ge 2 ]"
    spec = {
        "restartPolicy": "OnFailure",
        "volumes": [{"name": "w", "emptyDir": {}}],
        "containers": [
            {
                "name": "flaky",
                "image": "busybox:1.36",
                "command": ["sh", "-c", script],
                "volumeMounts": [{"name": "w", "mountPath": "/w"}],
            }
        ],
    }
    config = store_pod("default", "flaky", spec)

    run(config)

    reports = reports_for(aws_clients, config.status_queue_url, config.pod_uid)
    final = reports[-1]
    assert final.phase == "Succeeded"
    assert final.containers[0].restart_count == 2
    assert any(r.containers[0].reason == "CrashLoopBackOff" for r in reports)


def test_emulated_instance_runs_the_agent_and_ends_terminated(
    local_aws: LocalAwsProcess,
    aws_clients: AwsClients,
    envelope: Envelope,
    store_pod: Callable[..., AgentConfig],
    docker_host: str,
    tmp_path: Path,
) -> None:
    config = store_pod(*pod_from_case("02-cpu-batch.yaml"))
    ec2 = aws_clients.ec2
    emulator = InstanceEmulator(
        ec2,
        aws_clients.s3,
        endpoint_url=local_aws.url,
        region=envelope.region,
        docker_host=docker_host,
        state_dir=tmp_path,
    )

    with emulator:
        launched = time.monotonic()
        instance_id = launch(aws_clients, envelope, config, bundle_stored_for=AGENT_TEST_ARN)

        reports: list[StatusReport] = []
        running_at = final_at = None
        deadline = time.monotonic() + 60
        while final_at is None and time.monotonic() < deadline:
            reports += reports_for(aws_clients, config.status_queue_url, config.pod_uid)
            if running_at is None and any(r.containers[0].started_at for r in reports):
                running_at = time.monotonic() - launched
            if any(r.phase == "Succeeded" for r in reports):
                final_at = time.monotonic() - launched
            time.sleep(0.1)
        state = ""
        while state != "terminated" and time.monotonic() < deadline:
            found = ec2.describe_instances(InstanceIds=[instance_id])
            state = found["Reservations"][0]["Instances"][0]["State"]["Name"]
            time.sleep(0.1)
        terminated_at = time.monotonic() - launched

    assert final_at is not None, (tmp_path / "instances" / instance_id / "agent.log").read_text()
    assert state == "terminated"
    assert reports[-1].instance_id == instance_id
    logging.getLogger(__name__).warning(
        "RunInstances -> container running %.2fs, -> final report %.2fs, -> terminated %.2fs",
        running_at,
        final_at,
        terminated_at,
    )


def test_instance_terminated_from_outside_loses_its_agent_and_containers(
    local_aws: LocalAwsProcess,
    aws_clients: AwsClients,
    envelope: Envelope,
    store_pod: Callable[..., AgentConfig],
    docker_host: str,
    tmp_path: Path,
) -> None:
    spec = {
        "restartPolicy": "Never",
        "containers": [{"name": "long", "image": "busybox:1.36", "command": ["sleep", "600"]}],
    }
    config = store_pod("default", "long-job", spec)
    emulator = InstanceEmulator(
        aws_clients.ec2,
        aws_clients.s3,
        endpoint_url=local_aws.url,
        region=envelope.region,
        docker_host=docker_host,
        state_dir=tmp_path,
    )

    with emulator:
        instance_id = launch(aws_clients, envelope, config, bundle_stored_for=AGENT_TEST_ARN)
        deadline = time.monotonic() + 60
        while not containers_of(docker_host, config.pod_uid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert containers_of(docker_host, config.pod_uid), "the pod's container never started"

        aws_clients.ec2.terminate_instances(InstanceIds=[instance_id])
        terminated = time.monotonic()
        while containers_of(docker_host, config.pod_uid) and time.monotonic() < deadline:
            time.sleep(0.1)
        gone_after = time.monotonic() - terminated
        agent = emulator.instances[instance_id].process

    assert containers_of(docker_host, config.pod_uid) == []
    assert gone_after < 3.0
    assert agent is not None and agent.returncode is not None
