"""The agent's safety nets for real: spot interruption notices and the dead-man switch.

The agent, its containers (Docker) and the runtime are real; AWS is the local moto
server, whose control endpoint plays EC2 deciding to reclaim a spot instance, and the
instance emulator serves that notice to the agent where IMDS would. Leases are a few
seconds long here (a runtime refuses less than five minutes; the tests set the lease on
the objects directly), and every wait is on a condition with a timeout.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orca import tags
from orca.agent.docker import DockerCli
from orca.agent.main import emulated_options, run_agent
from orca.agent.supervisor import Tuning
from orca.agent.watch import WatchTimings
from orca.aws.bundles import BundleStore
from orca.aws.clients import AwsClients
from orca.aws.heartbeats import HeartbeatStore
from orca.aws.logs import ContainerLogs, stream_name
from orca.aws.queue import StatusQueue
from orca.bootstrap import AgentConfig
from orca.bundle import PodBundle
from orca.messages import StatusReport
from orca_local.envelope import Envelope
from orca_local.images import local_image_for
from orca_local.instances import InstanceEmulator
from tests.integration.aws_fixtures import launch
from tests.integration.runtime_fixtures import Burst, eventually

pytestmark = pytest.mark.integration

FAST = Tuning(backoff_initial=0.5, backoff_cap=1.0, log_flush_interval=0.2)
# Stops at once and says so when asked to (SIGTERM), as a checkpointing job would.
GRACEFUL = "trap 'echo checkpoint saved; exit 0' TERM; echo working; while :; do sleep 0.2; done"
# Ignores SIGTERM: only SIGKILL at the end of its grace period stops it.
STUBBORN = "trap '' TERM; echo working; while :; do sleep 0.2; done"


def pod_manifest(name: str, script: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {"orca.research/instance-type": "m7i.large", **annotations},
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", script]}
            ],
        },
    }


def instance_of(burst: Burst, pod: dict[str, Any]) -> Any:
    [instance] = burst.instances(pod["metadata"]["uid"])
    return instance


def log_lines(aws: AwsClients, log_group: str, pod: dict[str, Any], container: str) -> list[str]:
    meta = pod["metadata"]
    stream = stream_name(meta["namespace"], meta["name"], meta["uid"], container)
    return [line.message for line in ContainerLogs(aws.logs, log_group).read(stream)]


def agent_log(emulator: InstanceEmulator, instance_id: str) -> str:
    return emulator.instances[instance_id].agent_log.read_text()


def test_spot_notice_stops_the_pod_gracefully_reports_the_interruption_and_powers_off(
    burst: Burst, burst_emulator: InstanceEmulator, local_aws: Any
) -> None:
    burst.start()
    manifest = pod_manifest("spot-trainer", GRACEFUL, **{"orca.research/launch-type": "spot"})
    created = burst.create(manifest)
    eventually(lambda: burst.phase("default", "spot-trainer") == "Running", 60, "Running")
    instance = instance_of(burst, created)
    assert instance.spot

    notice = local_aws.control.interrupt_spot_instance(instance.instance_id, 120)
    notice_time = datetime.fromisoformat(notice["time"].replace("Z", "+00:00"))

    pod = eventually(
        lambda: (
            (p := burst.pod("default", "spot-trainer"))
            and p["status"].get("phase") == "Failed"
            and p
        ),
        timeout=60,
        what="the pod Failed",
    )
    ended = eventually(
        lambda: (i := instance_of(burst, created)).state == "terminated" and i,
        timeout=30,
        what="the instance terminated",
    )
    terminated_before_notice = datetime.now(UTC) < notice_time

    assert pod["status"]["reason"] == "SpotInterrupted"
    assert "Spot interruption" in pod["status"]["message"]
    assert f"at {notice['time']}" in pod["status"]["message"]
    [main] = pod["status"]["containerStatuses"]
    assert main["state"]["terminated"]["exitCode"] == 0
    assert log_lines(burst.aws, burst.settings.log_group, pod, "main") == [
        "working",
        "checkpoint saved",
    ]
    # Ended before EC2 reclaimed it: powered off by the agent, or terminated by the runtime
    # on the agent's final report, whichever came first.
    assert (ended.state_reason or "").split(":")[0] in (
        "Client.InstanceInitiatedShutdown",
        "Client.UserInitiatedShutdown",
    )
    assert terminated_before_notice
    warnings = [e for e in burst.events("default", "spot-trainer") if e["type"] == "Warning"]
    assert any(e["reason"] == "SpotInterrupted" for e in warnings), warnings
    assert (
        DockerCli(burst_emulator.docker.host)
        .run(
            [
                "ps",
                "--all",
                "--quiet",
                "--filter",
                f"label={tags.POD_UID}={created['metadata']['uid']}",
            ]
        )
        .stdout.split()
        == []
    )


def test_heartbeats_keep_the_pod_past_the_lease_and_runtime_silence_stops_it(
    burst: Burst, burst_emulator: InstanceEmulator
) -> None:
    lease = timedelta(seconds=5)
    burst.start(runtime_lease=lease)
    created = burst.create(pod_manifest("watched", GRACEFUL))
    eventually(lambda: burst.phase("default", "watched") == "Running", 60, "Running")
    instance_id = instance_of(burst, created).instance_id

    # Three leases with the runtime writing its heartbeat: the pod must run throughout.
    until = time.monotonic() + 3 * lease.total_seconds()
    while time.monotonic() < until:
        assert burst.phase("default", "watched") == "Running", agent_log(
            burst_emulator, instance_id
        )
        assert instance_of(burst, created).live
        time.sleep(0.2)

    burst.stop()
    silenced = time.monotonic()
    eventually(
        lambda: instance_of(burst, created).state == "terminated",
        timeout=lease.total_seconds() + 30,
        what="the silent runtime's instance terminated by its agent",
    )
    stopped_after = time.monotonic() - silenced
    burst.start(runtime_lease=lease)
    pod = eventually(
        lambda: (
            (p := burst.pod("default", "watched")) and p["status"].get("phase") == "Failed" and p
        ),
        timeout=30,
        what="the pod Failed once the runtime is back",
    )

    assert stopped_after >= lease.total_seconds() - 1.5
    assert pod["status"]["reason"] == "RuntimeSilent"
    assert "has not been heard from for" in pod["status"]["message"]
    assert "last heartbeat" in pod["status"]["message"]
    assert log_lines(burst.aws, burst.settings.log_group, pod, "main")[-1] == "checkpoint saved"
    log = agent_log(burst_emulator, instance_id)
    assert "RuntimeSilent" in log and "powering off" in log


def stored_agent_config(
    aws: AwsClients,
    envelope: Envelope,
    docker_host: str,
    spec: dict[str, Any],
    **updates: Any,
) -> AgentConfig:
    """Stores a pod's bundle (its images emulated locally); the agent settings for it."""
    uid = str(uuid.uuid4())
    name = f"net-{uid[:8]}"
    bundle = PodBundle(pod_uid=uid, namespace="default", name=name, spec=spec, env={})
    BundleStore(aws.s3, envelope.bundle_bucket).put(bundle, NOTICE_HOST_ARN)
    for container in spec["containers"]:
        local = local_image_for(container["image"])
        assert local is not None
        DockerCli(docker_host).run(["tag", local, container["image"]])
    config = AgentConfig(
        region=envelope.region,
        cluster="test-cluster",
        department="physics",
        pod_uid=uid,
        pod=f"default/{name}",
        bundle_bucket=envelope.bundle_bucket,
        status_queue_url=envelope.status_queue_url,
        log_group=envelope.log_group,
        deadline=datetime.now(UTC) + timedelta(minutes=10),
    )
    return config.model_copy(update=updates)


def reports_for(aws: AwsClients, queue_url: str, pod_uid: str) -> list[StatusReport]:
    queue = StatusQueue(aws.sqs, queue_url)
    found: list[StatusReport] = []
    while received := queue.receive(wait_seconds=0):
        queue.delete([r.receipt_handle for r in received])
        found += [r.report for r in received if r.report.pod_uid == pod_uid]
    return sorted(found, key=lambda report: report.sequence)


def test_without_any_heartbeat_the_agent_stops_its_pod_a_lease_after_it_started(
    aws_clients: AwsClients,
    envelope: Envelope,
    docker_host: str,
    local_aws: Any,
    tmp_path: Path,
) -> None:
    spec = {
        "restartPolicy": "Never",
        "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", GRACEFUL]}
        ],
    }
    # No runtime writes this heartbeat: the runtime is silent from the start.
    silent = HeartbeatStore.of_department(
        aws_clients.s3, envelope.bundle_bucket, "test-cluster", f"gone-{uuid.uuid4().hex[:8]}"
    )
    config = stored_agent_config(
        aws_clients, envelope, docker_host, spec, heartbeat_url=silent.url, runtime_lease_seconds=4
    )
    emulator = InstanceEmulator(
        aws_clients.ec2,
        aws_clients.s3,
        endpoint_url=local_aws.url,
        region=envelope.region,
        docker_host=docker_host,
        state_dir=tmp_path,
        poll_interval=0.2,
    )

    with emulator:
        instance_id = launch(
            aws_clients,
            envelope,
            config,
            bundle_stored_for=NOTICE_HOST_ARN,
            instance_type="m7i.large",
        )

        def state() -> str:
            found = aws_clients.ec2.describe_instances(InstanceIds=[instance_id])
            return str(found["Reservations"][0]["Instances"][0]["State"]["Name"])

        eventually(lambda: state() == "terminated", timeout=60, what="the instance terminated")
        log = emulator.instances[instance_id].agent_log.read_text()

    reports = reports_for(aws_clients, config.status_queue_url, config.pod_uid)
    final = reports[-1]
    assert (final.phase, final.reason) == ("Failed", "RuntimeSilent"), log
    assert final.message is not None
    assert "no heartbeat since the agent started" in final.message
    assert "the instance stops itself so it does not bill unattended" in final.message
    assert final.containers[0].state == "terminated"
    running = next(r for r in reports if r.containers[0].state == "running")
    assert (final.sent_at - running.sent_at).total_seconds() >= 4 - 1.5
    assert "powering off: pod default/" in log


NOTICE_HOST_ARN = "arn:aws:ec2:us-east-1:123456789012:instance/i-0spotnotice000001"


class NoticeHost:
    """An emulated host whose spot notice the test sets, remembering when it powered off."""

    emulated = True

    def __init__(self) -> None:
        self.notice: datetime | None = None
        self.powered_off_at: datetime | None = None
        self.reasons: list[str] = []

    def instance_id(self) -> str:
        return "i-0spotnotice000001"

    def instance_arn(self) -> str:
        return NOTICE_HOST_ARN

    def private_ip(self) -> str | None:
        return "10.64.0.11"

    def spot_notice(self) -> datetime | None:
        return self.notice

    def shutdown(self, reason: str) -> None:
        self.powered_off_at = datetime.now(UTC)
        self.reasons.append(reason)


def test_spot_notice_cuts_a_long_grace_period_to_be_done_before_the_reclaim(
    aws_clients: AwsClients, envelope: Envelope, docker_host: str
) -> None:
    spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 600,
        "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", STUBBORN]}
        ],
    }
    config = stored_agent_config(aws_clients, envelope, docker_host, spec, spot=True)
    host = NoticeHost()
    phases: list[str] = []
    agent = threading.Thread(
        target=lambda: phases.append(
            run_agent(
                config,
                host,
                clients=aws_clients,
                docker=DockerCli(docker_host),
                options=emulated_options(),
                tuning=FAST,
                timings=WatchTimings(spot_poll=0.2, spot_reserve=3.0),
                handle_signals=False,
            )
        ),
        daemon=True,
    )
    agent.start()
    docker = DockerCli(docker_host)
    eventually(
        lambda: docker.run(
            ["ps", "--quiet", "--filter", f"label={tags.POD_UID}={config.pod_uid}"]
        ).stdout.strip(),
        timeout=30,
        what="the container running",
    )

    # Eight seconds' notice against a 600 s grace period: 5 s to stop, 3 s to power off.
    host.notice = datetime.now(UTC) + timedelta(seconds=8)
    agent.join(timeout=40)

    assert phases == ["Failed"]
    assert host.powered_off_at is not None and host.powered_off_at < host.notice
    assert host.reasons == [f"pod {config.pod} ended Failed (SpotInterrupted)"]
    final = reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1]
    assert final.reason == "SpotInterrupted"
    (main,) = final.containers
    assert (main.state, main.exit_code) == ("terminated", 137)
