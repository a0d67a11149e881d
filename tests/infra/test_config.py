"""The stack configuration: typed, validated once, and refused before anything is declared."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from orca_infra.config import StackConfig

from tests.infra import harness
from tests.infra.conftest import physics_with
from tests.infra.harness import INFRA, run_stack


def refused(config: dict[str, Any]) -> str:
    with pytest.raises(Exception) as caught:
        run_stack(config)
    assert harness.last_mocks is not None
    assert harness.last_mocks.resources == [], "a refused config must declare nothing"
    return str(caught.value)


@pytest.mark.parametrize(
    ("changes", "key", "reason"),
    [
        ({"budget": "0"}, "orca:budget", "greater than 0"),
        ({"budget": "lots"}, "orca:budget", "valid integer"),
        ({"budget": None}, "orca:budget", "Field required"),
        ({"department": "Physics Dept"}, "orca:department", "lowercase"),
        ({"budgetAlertEmails": ["nobody"]}, "orca:budgetAlertEmails", "not e-mail"),
        ({"allowedInstanceTypes": ["p5 big"]}, "orca:allowedInstanceTypes", "family wildcards"),
        ({"maxInstances": "0"}, "orca:maxInstances", "greater than or equal to 1"),
        ({"network": {"cidr": "10.0.0.0/8", "zones": ["us-east-1a"]}}, "orca:network.cidr", "/16"),
        ({"network": {"vpcId": "vpc-1", "subnetIds": []}}, "orca:network.vpcId", "pattern"),
        ({"network": "not json {"}, "orca:network", "not a list or object"),
        ({"oidcIssuerUrl": "http://insecure.example"}, "orca:oidcIssuerUrl", "pattern"),
        ({"logRetentionDays": "10"}, "orca:logRetentionDays", "CloudWatch Logs accepts"),
        ({"kubeconfig": None}, "orca:kubeconfig", "pulumi config set --secret"),
        ({"region": "mars"}, "aws:region", "pattern"),
    ],
)
def test_bad_value_fails_naming_the_key_and_reason(
    changes: dict[str, Any], key: str, reason: str
) -> None:
    message = refused(physics_with(**changes))
    line = next((line for line in message.splitlines() if line.strip().startswith(key)), "")
    assert reason in line, message


def test_reservation_without_end_date_is_refused() -> None:
    reservation = {"instanceType": "p5.48xlarge", "availabilityZone": "us-east-1a", "count": 1}
    message = refused(physics_with(capacityReservations=[reservation]))
    assert "orca:capacityReservations[0].endDate: Field required" in message


def test_reservation_end_date_without_time_zone_is_refused() -> None:
    reservation = {
        "instanceType": "p5.48xlarge",
        "availabilityZone": "us-east-1a",
        "count": 1,
        "endDate": "2027-06-30T00:00:00",
    }
    assert "time zone" in refused(physics_with(capacityReservations=[reservation]))


def test_reservation_of_a_type_no_pod_may_use_is_refused() -> None:
    reservation = {
        "instanceType": "m7i.large",
        "availabilityZone": "us-east-1a",
        "count": 1,
        "endDate": "2027-06-30T00:00:00Z",
    }
    message = refused(physics_with(capacityReservations=[reservation]))
    assert "orca:capacityReservations[0].instanceType: m7i.large is not in" in message


def test_reservation_in_a_zone_without_subnet_is_refused() -> None:
    reservation = {
        "instanceType": "p5.48xlarge",
        "availabilityZone": "us-east-1f",
        "count": 1,
        "endDate": "2027-06-30T00:00:00Z",
    }
    assert "has no subnet" in refused(physics_with(capacityReservations=[reservation]))


def test_every_problem_is_reported_at_once() -> None:
    message = refused(physics_with(budget="-5", department="A B"))
    assert "orca:budget" in message and "orca:department" in message


def test_oidc_provider_without_issuer_is_refused() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/oidc.example.edu"
    message = refused(physics_with(oidcIssuerUrl=None, oidcProviderArn=arn))
    assert "orca:oidcProviderArn: set orca:oidcIssuerUrl too" in message


def test_project_file_declares_every_key_the_program_reads() -> None:
    project = yaml.safe_load((INFRA / "Pulumi.yaml").read_text())
    declared = set(project["config"])
    read = {f.alias or name for name, f in StackConfig.model_fields.items()} - {
        "stack",
        "region",
    }
    assert declared == read
    for key, declaration in project["config"].items():
        assert declaration.get("description"), key


def test_project_file_defaults_match_the_program() -> None:
    project = yaml.safe_load((INFRA / "Pulumi.yaml").read_text())
    fields = {f.alias or name: f for name, f in StackConfig.model_fields.items()}
    for key, declaration in project["config"].items():
        if "default" not in declaration:
            continue
        default = fields[key].get_default(call_default_factory=True)
        # An empty text default means unset, which the program reads as None.
        assert declaration["default"] == default or (declaration["default"] == "" and not default)


def test_example_stacks_differ_in_budget_types_and_reservations() -> None:
    physics = yaml.safe_load((INFRA / "Pulumi.physics.yaml").read_text())["config"]
    biology = yaml.safe_load((INFRA / "Pulumi.biology.yaml").read_text())["config"]
    for key in ("orca:budget", "orca:allowedInstanceTypes"):
        assert physics[key] != biology[key]
    assert physics.get("orca:capacityReservations") and not biology.get("orca:capacityReservations")
