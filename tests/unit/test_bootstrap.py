"""The user data bootstrap as text: its size, what it holds, and the agent's container."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from orca.agent.containers import DEFAULT_POD_ROOT
from orca.bootstrap import (
    POWEROFF_BY_BOOTSTRAP_VAR,
    AgentConfig,
    parse_user_data,
    render_user_data,
)

ECR_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/orca/runtime:0.1.0"
OTHER_IMAGE = "registry.example.edu/orca/runtime:0.1.0"


def agent_config(**changes: object) -> AgentConfig:
    values: dict[str, object] = {
        "region": "eu-west-1",
        "cluster": "campus",
        "department": "physics",
        "pod_uid": "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f",
        "pod": "lhc-analysis/gpu-training-job-with-a-long-name-" + "x" * 180,
        "bundle_bucket": "orca-physics-bundles",
        "status_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/orca-physics-status",
        "log_group": "/orca/campus/physics",
        "deadline": datetime(2026, 12, 4, 19, 27, 36, tzinfo=UTC),
        "agent_image": ECR_IMAGE,
        "spot": True,
        "heartbeat_url": "s3://orca-physics-bundles/heartbeats/campus/physics.json",
        "runtime_lease_seconds": 900,
    }
    values.update(changes)
    return AgentConfig.model_validate(values)


def docker_run_argv(script: str) -> list[str]:
    """The ``docker run`` command of the script, continuation lines joined, as the instance
    runs it (``root`` is empty there)."""
    joined = script.replace("\\\n", " ")
    [line] = [line for line in joined.splitlines() if line.strip().startswith("docker run ")]
    command = line.split("||")[0].replace("$root", "")
    return shlex.split(command)


def test_user_data_stays_far_below_ec2s_limit_even_with_long_names() -> None:
    script = render_user_data(agent_config())

    # EC2 allows 16 KB; staying under half of it leaves room for what comes later.
    assert len(script.encode()) < 8 * 1024


def test_user_data_holds_the_agent_settings_and_nothing_secret() -> None:
    config = agent_config()
    script = render_user_data(config)

    assert parse_user_data(script) == config
    # The ECR token goes from aws to docker through a pipe, never into the script or argv.
    assert "--password-stdin" in script
    assert re.search(r"AKIA|ASIA|aws_secret|PRIVATE KEY|password=|token=", script) is None


def test_the_agent_container_shares_the_hosts_network_docker_and_pod_directories() -> None:
    argv = docker_run_argv(render_user_data(agent_config()))

    assert argv == [
        "docker",
        "run",
        "--rm",
        "--name",
        "orca-agent",
        "--network",
        "host",
        "--user",
        "0:0",
        "--env",
        f"{POWEROFF_BY_BOOTSTRAP_VAR}=1",
        "--volume",
        "/var/run/docker.sock:/var/run/docker.sock",
        "--volume",
        "/etc/orca:/etc/orca:ro",
        "--volume",
        "/run/orca:/run/orca",
        "$agent_image",
        "agent",
        "--config",
        "/etc/orca/agent.json",
    ]


def test_pod_directories_lie_inside_the_mount_at_the_same_path() -> None:
    # The host's dockerd resolves the bind mounts the agent asks for, so the agent's pod
    # directories must have the same path inside its container as on the host.
    [mount] = [
        value
        for value in docker_run_argv(render_user_data(agent_config()))
        if value.startswith("/run/orca")
    ]
    outside, inside = mount.split(":")

    assert outside == inside
    assert DEFAULT_POD_ROOT.startswith(inside + "/")


def test_an_ecr_image_is_pulled_after_signing_in_to_its_registry_and_region() -> None:
    script = render_user_data(agent_config())

    assert "aws ecr get-login-password --region eu-west-1" in script
    assert (
        "docker login --username AWS --password-stdin "
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com" in script
    )
    assert script.index("get-login-password") < script.index("docker pull")


def test_an_image_outside_ecr_is_pulled_without_signing_in() -> None:
    script = render_user_data(agent_config(agent_image=OTHER_IMAGE))

    assert f"agent_image={OTHER_IMAGE}" in script
    assert "aws ecr" not in script
    assert "docker login" not in script


def test_without_an_image_the_script_names_none() -> None:
    script = render_user_data(agent_config(agent_image=None))

    assert "agent_image=''" in script
    assert "aws ecr" not in script
    assert parse_user_data(script).agent_image is None


@pytest.mark.parametrize(
    "image",
    ["s3://orca/agent.tar", "Registry/ORCA:1", "orca:", "orca runtime", "orca;reboot"],
)
def test_a_bad_image_reference_is_refused(image: str) -> None:
    with pytest.raises(ValidationError, match=r"agent_image|agentImage"):
        agent_config(agent_image=image)
