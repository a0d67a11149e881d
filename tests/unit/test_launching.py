"""Launch requests: tokens, zones, tags and user data."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orca import tags
from orca.aws.model import ReservationChoice, Subnet
from orca.bootstrap import parse_user_data
from orca.catalog import Catalog
from orca.contract import resolve_launch
from orca.launching import Launcher, choose_subnet, client_token
from tests.unit.helpers import case_documents, pod, settings

SUBNETS = [
    Subnet("subnet-0a1b2c3d", "us-east-1a", "vpc-1"),
    Subnet("subnet-1a1b2c3d", "us-east-1b", "vpc-1"),
]
DEADLINE = datetime(2026, 12, 3, 20, 0, tzinfo=UTC)


def test_client_token_is_stable_per_attempt_and_within_ec2_limits() -> None:
    uid = "0b6f1c2e-0000-4000-8000-000000000001"

    first, again, second = client_token(uid, 1), client_token(uid, 1), client_token(uid, 2)

    assert first == again
    assert first != second
    assert first != client_token("another-uid", 1)
    assert len(first) <= 64 and first.isascii()


def test_each_new_attempt_moves_to_the_next_zone() -> None:
    [p] = case_documents("02-cpu-batch.yaml")
    spec = resolve_launch(p, settings(), Catalog.shipped(), ["us-east-1a", "us-east-1b"])
    uid = p["metadata"]["uid"]

    zones = [choose_subnet(SUBNETS, spec, uid, n).availability_zone for n in (1, 2, 3)]

    assert zones[0] != zones[1]
    assert zones[0] == zones[2]


def test_readme_gpu_pod_launch_request_carries_tags_template_and_spot() -> None:
    [p] = case_documents("01-gpu-training-spot.yaml")
    s = settings(tags={"project": "lhc"})
    spec = resolve_launch(p, s, Catalog.shipped(), ["us-east-1a", "us-east-1b"])

    plan = Launcher(s, ec2=None, subnets=SUBNETS).plan(  # type: ignore[arg-type]
        p, spec, attempt=1, deadline=DEADLINE
    )

    request = plan.request
    assert request.instance_type == "p5.48xlarge"
    assert request.market == "spot"
    assert request.launch_template_id == "lt-0123456789abcdef0"
    assert request.client_token == client_token(p["metadata"]["uid"], 1)
    assert request.tags[tags.POD] == "default/gpu-training-job"
    assert request.tags[tags.POD_UID] == p["metadata"]["uid"]
    assert request.tags[tags.NODE] == "orca-physics"
    assert request.tags[tags.MANAGED_BY] == "orca"
    assert request.tags["department"] == "physics"
    assert request.tags["cost-center"] == "cc-4410"
    assert request.tags["project"] == "lhc"
    assert request.tags["Name"] == "orca-physics/default/gpu-training-job"
    agent = parse_user_data(request.user_data)
    assert agent.pod_uid == p["metadata"]["uid"]
    assert agent.deadline == DEADLINE
    assert len(request.user_data.encode()) < 8 * 1024


def test_user_data_of_a_pod_with_a_secret_holds_no_secret() -> None:
    documents = case_documents("04-job-with-init-config-secret.yaml")
    job = documents[2]
    p = {
        "metadata": {
            **job["spec"]["template"]["metadata"],
            "name": "md-simulation-x1",
            "namespace": "default",
            "uid": "11111111-0000-4000-8000-000000000004",
        },
        "spec": job["spec"]["template"]["spec"],
    }
    s = settings()
    spec = resolve_launch(p, s, Catalog.shipped(), ["us-east-1a"])

    plan = Launcher(s, ec2=None, subnets=SUBNETS).plan(  # type: ignore[arg-type]
        p, spec, attempt=1, deadline=DEADLINE + timedelta(hours=1)
    )

    assert "s3cr3t" not in plan.request.user_data
    assert all("s3cr3t" not in value for value in plan.request.tags.values())


def test_user_data_is_a_valid_bash_script_that_powers_off_without_an_agent(
    tmp_path: Path,
) -> None:
    [p] = case_documents("02-cpu-batch.yaml")
    s = settings()
    spec = resolve_launch(p, s, Catalog.shipped(), ["us-east-1a"])
    plan = Launcher(s, ec2=None, subnets=SUBNETS).plan(  # type: ignore[arg-type]
        p, spec, attempt=1, deadline=DEADLINE
    )
    script = tmp_path / "user-data.sh"
    script.write_text(plan.request.user_data)

    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)

    assert syntax.returncode == 0, syntax.stderr
    assert "agent_image=''" in plan.request.user_data
    assert "shutdown -h now" in plan.request.user_data


def test_user_data_names_the_agent_image_when_the_department_has_one() -> None:
    [p] = case_documents("02-cpu-batch.yaml")
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/orca:0.1.0"
    s = settings(agent_image=image)
    spec = resolve_launch(p, s, Catalog.shipped(), ["us-east-1a"])

    plan = Launcher(s, ec2=None, subnets=SUBNETS).plan(  # type: ignore[arg-type]
        p, spec, attempt=1, deadline=DEADLINE
    )

    assert f"agent_image={image}" in plan.request.user_data
    assert parse_user_data(plan.request.user_data).agent_image == image


def test_the_pod_reservation_choice_reaches_the_launch_request() -> None:
    group = "arn:aws:resource-groups:us-east-1:123456789012:group/orca-physics-pool"
    s = settings(capacity_reservation_group_arn=group)
    p = pod(
        {
            "orca.research/instance-type": "p5.48xlarge",
            "orca.research/capacity-reservation": "group",
        }
    )
    spec = resolve_launch(p, s, Catalog.shipped(), ["us-east-1a", "us-east-1b"])

    plan = Launcher(s, ec2=None, subnets=SUBNETS).plan(  # type: ignore[arg-type]
        p, spec, attempt=1, deadline=DEADLINE
    )

    assert plan.request.reservation == ReservationChoice.group(group)
    assert plan.request.market == "on-demand"
