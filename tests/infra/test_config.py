"""The stack configuration: typed, validated once, and refused before anything is declared."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from orca_infra.config import StackConfig

from tests.infra import harness
from tests.infra.conftest import physics_with
from tests.infra.harness import INFRA, end_date_in, run_stack


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
        ({"clusterName": "Campus_Cluster"}, "orca:clusterName", "lowercase"),
        ({"clusterName": "c" * 41}, "orca:clusterName", "1-40"),
        ({"costCenter": "c" * 257}, "orca:costCenter", "at most 256"),
        ({"costCenter": "cc<4410>"}, "orca:costCenter", "pattern"),
        (
            {"budgetAlertEmails": [f"pi{i}@example.edu" for i in range(11)]},
            "orca:budgetAlertEmails",
            "at most 10",
        ),
        (
            {"oidcProviderArn": "arn:aws:iam::1234:oidc-provider/oidc.campus.example.edu"},
            "orca:oidcProviderArn",
            "pattern",
        ),
        ({"burstNamespaces": ["Physics Lab"]}, "orca:burstNamespaces", "DNS labels"),
        ({"kubeletTlsSecret": "Kubelet_TLS"}, "orca:kubeletTlsSecret", "DNS subdomain"),
        ({"runtimeImage": "Registry/ORCA runtime"}, "orca:runtimeImage", "pattern"),
        ({"namespaceShares": {"genomics": 140}}, "orca:namespaceShares", "percentages"),
        ({"namespaceShares": {"Gen Omics": 10}}, "orca:namespaceShares", "not namespace"),
        ({"namespaceShares": "[40]"}, "orca:namespaceShares", "valid dictionary"),
        ({"namespaceCaps": {"genomics": {"gpus": -1}}}, "orca:namespaceCaps", "greater than"),
        ({"namespaceCaps": {"genomics": {"cpus": 4}}}, "orca:namespaceCaps", "not permitted"),
        ({"budgetWhenRefused": "queue"}, "orca:budgetWhenRefused", "'wait' or 'fail'"),
        ({"budgetOverLimit": "kill"}, "orca:budgetOverLimit", "'finish' or 'stop'"),
        (
            {"budgetHardCeilingPercent": "-1"},
            "orca:budgetHardCeilingPercent",
            "greater than or equal to 0",
        ),
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
        "endDate": end_date_in(200).removesuffix("Z"),
    }
    assert "time zone" in refused(physics_with(capacityReservations=[reservation]))


def _reservation(**changes: Any) -> dict[str, Any]:
    return {
        "instanceType": "p5.48xlarge",
        "availabilityZone": "us-east-1a",
        "count": 1,
        "endDate": end_date_in(200),
        **changes,
    }


def test_reservation_that_has_already_ended_is_refused() -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    message = refused(physics_with(capacityReservations=[_reservation(endDate=past)]))
    assert f"orca:capacityReservations[0].endDate: {past} is not in the future" in message


def test_reservation_end_date_with_an_offset_is_converted_to_utc() -> None:
    later = datetime.now(UTC) + timedelta(days=90)
    local = later.astimezone(timezone(timedelta(hours=2))).replace(microsecond=0)
    run = run_stack(physics_with(capacityReservations=[_reservation(endDate=local.isoformat())]))
    reservation = run.one("aws:ec2/capacityReservation:CapacityReservation").inputs
    assert reservation["endDate"] == local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert local.hour != local.astimezone(UTC).hour


def test_zone_outside_the_region_is_refused() -> None:
    network = {"cidr": "10.64.0.0/16", "zones": ["us-east-1a", "us-west-2a"]}
    message = refused(physics_with(network=network, capacityReservations=None))
    assert "orca:network.zones: us-west-2a not in aws:region us-east-1" in message


def test_reservation_zone_outside_the_region_is_refused() -> None:
    reservation = _reservation(availabilityZone="eu-west-1a")
    message = refused(physics_with(capacityReservations=[reservation]))
    assert (
        "orca:capacityReservations[0].availabilityZone: eu-west-1a is not in aws:region "
        "us-east-1" in message
    )


def test_oidc_provider_of_another_issuer_is_refused() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/oidc.other.example.edu"
    message = refused(physics_with(oidcProviderArn=arn))
    assert "orca:oidcProviderArn: names the provider of oidc.other.example.edu" in message


def test_oidc_provider_of_the_issuer_is_accepted() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/oidc.campus.example.edu"
    run = run_stack(physics_with(oidcProviderArn=arn, capacityReservations=None))
    assert run.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []


def test_part_of_the_kubelet_tls_material_is_refused() -> None:
    message = refused(physics_with(kubeletTlsCert="-----BEGIN CERTIFICATE-----"))
    assert "orca:kubeletTlsKey, orca:kubeletClientCa" in message
    assert "BEGIN CERTIFICATE" not in message, "a secret's value must not reach the message"


def test_kubelet_tls_secret_name_without_the_material_is_refused() -> None:
    message = refused(physics_with(kubeletTlsSecret="orca-physics-kubelet-tls"))
    assert "orca:kubeletTlsSecret: names the Secret the stack creates" in message


def test_reservation_of_a_type_no_pod_may_use_is_refused() -> None:
    reservation = {
        "instanceType": "m7i.large",
        "availabilityZone": "us-east-1a",
        "count": 1,
        "endDate": end_date_in(200),
    }
    message = refused(physics_with(capacityReservations=[reservation]))
    assert "orca:capacityReservations[0].instanceType: m7i.large is not in" in message


def test_reservation_in_a_zone_without_subnet_is_refused() -> None:
    reservation = {
        "instanceType": "p5.48xlarge",
        "availabilityZone": "us-east-1f",
        "count": 1,
        "endDate": end_date_in(200),
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
