"""The real agent against a real Docker daemon and the local AWS: what a user would check.

Each test stores a pod's bundle in the envelope's bucket, runs the agent (in
this process, or as the emulator's subprocess for an instance launched in the
local EC2), then reads what the runtime would read: the status reports in the
department's queue and the container logs in CloudWatch Logs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from orca.agent.watch import WatchTimings
from orca.aws.bundles import BundleStore
from orca.aws.clients import AwsClients
from orca.bootstrap import AgentConfig, render_user_data
from orca.messages import StatusReport
from orca_local.aws import LocalAwsProcess
from orca_local.envelope import Envelope
from orca_local.instances import InstanceEmulator
from tests.integration.agent_fixtures import (
    AGENT_TEST_ARN,
    RecordingDocker,
    RecordingHost,
    containers_of,
    log_lines,
    pod_from_case,
    reports_for,
)
from tests.integration.aws_fixtures import launch

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.aws_fixtures", "tests.integration.docker_fixtures"]

SECRET = "s3cr3t-not-for-logs-0f9c"
SHA_LINE = "3c1ba78ba93fdf61cb80b6dcb321c92ef633f263dc5e01bea4472e43045472bc  -"


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


def test_two_containers_run_together_after_their_init_container_and_both_log(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
) -> None:
    image = "busybox:1.36"
    spec = {
        "restartPolicy": "Never",
        "volumes": [{"name": "shared", "emptyDir": {}}],
        "initContainers": [
            {
                "name": "fetch",
                "image": image,
                "command": ["sh", "-c", "echo chunk-17 > /shared/input; echo fetched"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }
        ],
        "containers": [
            {
                "name": name,
                "image": image,
                "command": ["sh", "-c", f"{step} /shared/input; touch /shared/{name}.done; {wait}"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }
            # Each waits for the other's mark: they can only finish if they run together.
            for name, step, wait in (
                ("align", "cat", "until [ -e /shared/stats.done ]; do sleep 0.1; done"),
                ("stats", "wc -c <", "until [ -e /shared/align.done ]; do sleep 0.1; done"),
            )
        ],
    }
    config = store_pod("biology", "align-and-stats", spec)

    run(config)

    final = reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1]
    assert final.phase == "Succeeded"
    (fetch,) = final.init_containers
    assert [c.name for c in final.containers] == ["align", "stats"]
    assert all(c.exit_code == 0 and c.reason == "Completed" for c in final.containers)
    starts = [c.started_at for c in final.containers]
    assert fetch.finished_at is not None and None not in starts
    assert all(fetch.finished_at <= start for start in starts if start is not None)
    assert log_lines(aws_clients, config, "fetch") == ["fetched"]
    assert log_lines(aws_clients, config, "align") == ["chunk-17"]
    assert log_lines(aws_clients, config, "stats") == ["9"]


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


def test_run_as_non_root_refuses_a_root_image_and_runs_a_numeric_user_without_escalation(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
    docker_host: str,
) -> None:
    # busybox's image runs as root; the second pod names a user, so it may run.
    probe = {
        "name": "probe",
        "image": "busybox:1.36",
        "command": ["sh", "-c", "id -u; grep NoNewPrivs /proc/self/status"],
    }
    root = store_pod(
        "default",
        "non-root-refused",
        {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True},
            "containers": [probe],
        },
    )
    numeric = store_pod(
        "default",
        "non-root-numeric",
        {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
            "containers": [{**probe, "securityContext": {"allowPrivilegeEscalation": False}}],
        },
    )

    run(root)
    refused = reports_for(aws_clients, root.status_queue_url, root.pod_uid)[-1]
    run(numeric)

    assert (refused.phase, refused.reason) == ("Failed", "CreateContainerConfigError")
    assert "runAsNonRoot and image will run as root" in (refused.message or "")
    assert containers_of(docker_host, root.pod_uid) == []
    ran = reports_for(aws_clients, numeric.status_queue_url, numeric.pod_uid)[-1]
    assert ran.phase == "Succeeded"
    assert log_lines(aws_clients, numeric, "probe") == ["1000", "NoNewPrivs:\t1"]


def test_the_agent_waits_for_a_bundle_stored_after_it_started(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = store_pod(*pod_from_case("02-cpu-batch.yaml"))
    store = BundleStore(aws_clients.s3, config.bundle_bucket)
    bundle = store.get(config.pod_uid, AGENT_TEST_ARN)
    store.delete(config.pod_uid)
    # What the runtime does once RunInstances has answered: here, while the agent waits.
    late = threading.Timer(2.0, store.put, (bundle, AGENT_TEST_ARN))

    late.start()
    with caplog.at_level(logging.INFO, logger="orca.agent.main"):
        run(config)
    late.join()

    assert reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1].phase == (
        "Succeeded"
    )
    assert "not there yet (NoSuchKey)" in caplog.text
    assert log_lines(aws_clients, config, "align") == [SHA_LINE]


def test_a_bundle_that_never_comes_fails_the_pod_and_powers_off(
    store_pod: Callable[..., AgentConfig],
    run: Callable[..., RecordingHost],
    aws_clients: AwsClients,
) -> None:
    config = store_pod(*pod_from_case("02-cpu-batch.yaml"))
    BundleStore(aws_clients.s3, config.bundle_bucket).delete(config.pod_uid)

    started = time.monotonic()
    host = run(config, timings=WatchTimings(bundle_wait=3.0))

    final = reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1]
    assert (final.phase, final.reason) == ("Failed", "BundleUnavailable")
    assert "check that the instance role may read bundles/*/" in (final.message or "")
    assert time.monotonic() - started < 30
    assert host.shutdowns == ["pod biology/genome-align-chunk-17 ended Failed"]


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
    # The container's log outlives its instance, in the department's log group.
    assert log_lines(aws_clients, config, "align") == [SHA_LINE]
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
