"""Secret and ConfigMap volumes through the real runtime bundle, agent and Docker.

The bundle is built by the runtime's own resolver from a Secret and a ConfigMap,
stored in the envelope's bucket, and run on an emulated instance launched in the
local EC2 as the runtime launches it. The container prints both files; the Secret's
value is then looked for everywhere it must not be: the user data, the agent's log,
the CloudWatch log group's stream names, the instance's tags and the host's
command lines of docker.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orca.agent.main import emulated_options, run_agent
from orca.aws.bundles import BundleStore
from orca.aws.clients import AwsClients
from orca.bootstrap import AgentConfig, render_user_data
from orca.bundle import build_bundle
from orca.messages import StatusReport
from orca_local.aws import LocalAwsProcess
from orca_local.envelope import Envelope
from orca_local.images import local_image_for
from orca_local.instances import InstanceEmulator
from tests.integration.agent_fixtures import (
    AGENT_TEST_ARN,
    FAST,
    RecordingDocker,
    RecordingHost,
    log_lines,
    reports_for,
)
from tests.integration.aws_fixtures import launch

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.integration.aws_fixtures", "tests.integration.docker_fixtures"]

SECRET = "vol-s3cr3t-7d1e-not-for-logs"
IMAGE = "public.ecr.aws/docker/library/busybox:1.36"


class Namespace:
    """One namespace's ConfigMap and Secret, as the API server serves them."""

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"data": {"app.yaml": "steps: 5000"}} if name == "md-config" else None

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        if name != "md-credentials":
            return None
        return {"type": "Opaque", "data": {"token": base64.b64encode(SECRET.encode()).decode()}}

    def request_token(
        self, namespace: str, service_account: str, spec: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        return None


def pod_with_volumes() -> dict[str, Any]:
    script = "cat /etc/md/app.yaml; echo; cat /var/run/md-credentials/token; echo; ls -l /etc/md"
    return {
        "metadata": {"name": "md-volumes", "namespace": "default", "uid": str(uuid.uuid4())},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000},
            "volumes": [
                {"name": "config", "configMap": {"name": "md-config", "defaultMode": 0o444}},
                {
                    "name": "credentials",
                    "secret": {
                        "secretName": "md-credentials",
                        "defaultMode": 0o440,
                        "items": [{"key": "token", "path": "token", "mode": 0o444}],
                    },
                },
            ],
            "containers": [
                {
                    "name": "md",
                    "image": IMAGE,
                    "command": ["sh", "-c", script],
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/md"},
                        {"name": "credentials", "mountPath": "/var/run/md-credentials"},
                    ],
                }
            ],
        },
    }


def stored(clients: AwsClients, envelope: Envelope, docker_host: str) -> AgentConfig:
    pod = pod_with_volumes()
    bundle = build_bundle(pod, Namespace())
    BundleStore(clients.s3, envelope.bundle_bucket).put(bundle, AGENT_TEST_ARN)
    local = local_image_for(IMAGE)
    assert local is not None
    RecordingDocker(docker_host).run(["tag", local, IMAGE])
    meta = pod["metadata"]
    return AgentConfig(
        region=envelope.region,
        cluster="test-cluster",
        department="physics",
        pod_uid=meta["uid"],
        pod=f"{meta['namespace']}/{meta['name']}",
        bundle_bucket=envelope.bundle_bucket,
        status_queue_url=envelope.status_queue_url,
        log_group=envelope.log_group,
        deadline=datetime.now(UTC) + timedelta(minutes=10),
    )


def test_secret_and_configmap_files_reach_the_container_and_the_secret_nothing_else(
    aws_clients: AwsClients,
    envelope: Envelope,
    docker_host: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = stored(aws_clients, envelope, docker_host)
    docker = RecordingDocker(docker_host)
    caplog.set_level(logging.DEBUG)

    run_agent(
        config,
        RecordingHost(),
        clients=aws_clients,
        docker=docker,
        options=emulated_options(),
        tuning=FAST,
        handle_signals=False,
    )

    final = reports_for(aws_clients, config.status_queue_url, config.pod_uid)[-1]
    assert final.phase == "Succeeded", final
    lines = log_lines(aws_clients, config, "md")
    assert lines[:2] == ["steps: 5000", SECRET]
    # A user other than root reads the files: the modes the pod asked for.
    assert any(line.startswith("-r--r--r--") and "app.yaml" in line for line in lines)
    assert not any(SECRET in arg for argv in docker.argvs for arg in argv)
    # The agent's own records; botocore's DEBUG records show the container's output,
    # which is the pod's to print, on its way to CloudWatch.
    agent_records = [r.getMessage() for r in caplog.records if r.name.startswith("orca")]
    assert agent_records and not any(SECRET in message for message in agent_records)
    assert SECRET not in render_user_data(config)
    assert SECRET not in final.to_json()
    # The pod's private directory is gone with the pod.
    assert not Path(emulated_options().pod_root, config.pod_uid).exists()


def test_on_an_emulated_instance_the_secret_is_in_no_tag_log_or_stream_name(
    local_aws: LocalAwsProcess,
    aws_clients: AwsClients,
    envelope: Envelope,
    docker_host: str,
    tmp_path: Path,
) -> None:
    config = stored(aws_clients, envelope, docker_host)
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
        reports: list[StatusReport] = []
        deadline = time.monotonic() + 60
        while not any(r.phase == "Succeeded" for r in reports) and time.monotonic() < deadline:
            reports += reports_for(aws_clients, config.status_queue_url, config.pod_uid)
            time.sleep(0.1)
        user_data = aws_clients.ec2.describe_instance_attribute(
            InstanceId=instance_id, Attribute="userData"
        )["UserData"]["Value"]
        tags = aws_clients.ec2.describe_tags(
            Filters=[{"Name": "resource-id", "Values": [instance_id]}]
        )["Tags"]

    agent_log = (tmp_path / "instances" / instance_id / "agent.log").read_text()
    assert any(r.phase == "Succeeded" for r in reports), agent_log
    assert log_lines(aws_clients, config, "md")[:2] == ["steps: 5000", SECRET]
    assert SECRET not in agent_log
    assert SECRET not in base64.b64decode(user_data).decode()
    assert not any(SECRET in tag["Key"] or SECRET in tag["Value"] for tag in tags)
    streams = aws_clients.logs.describe_log_streams(logGroupName=config.log_group)["logStreams"]
    assert streams and not any(SECRET in stream["logStreamName"] for stream in streams)
