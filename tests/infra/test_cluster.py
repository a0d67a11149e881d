"""The runtime in the cluster, and the settings it is handed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from orca_infra.launch_templates import AMI_PARAMETERS

from orca.settings import LAUNCH_TEMPLATE_KINDS, load_settings
from tests.infra.conftest import physics_with
from tests.infra.harness import SECRET_SIGNATURE, StackRun, run_stack


def _deployment(run: StackRun) -> dict[str, Any]:
    spec: dict[str, Any] = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]
    return spec


def test_generated_settings_are_accepted_by_the_runtime(
    example: StackRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = example.one("kubernetes:core/v1:ConfigMap").inputs["data"]
    assert data == example.outputs["runtimeSettings"]
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    for key, value in data.items():
        # The kubelet certificate files are mounted from a Secret in the pod.
        value = value.replace("/etc/orca/kubelet-tls", str(tmp_path))
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCA_NODE_INTERNAL_IP", "10.1.2.3")

    settings = load_settings()

    assert settings.node_name == example.outputs["nodeName"]
    assert settings.subnet_ids == example.outputs["subnetIds"]
    assert settings.launch_templates == example.outputs["launchTemplateIds"]
    assert settings.status_queue_url == example.outputs["statusQueueUrl"]
    assert settings.bundle_bucket == example.outputs["bundleBucket"]
    assert settings.log_group == example.outputs["logGroup"]


def test_launch_template_kinds_are_those_the_runtime_expects() -> None:
    assert tuple(AMI_PARAMETERS) == LAUNCH_TEMPLATE_KINDS


def test_provider_uses_the_secret_kubeconfig_and_a_stable_cluster_identifier(
    physics: StackRun,
) -> None:
    provider = physics.one("pulumi:providers:kubernetes").inputs
    assert provider["clusterIdentifier"] == "campus"
    assert SECRET_SIGNATURE in provider["kubeconfig"]


def test_service_account_and_deployment_carry_irsa_without_a_webhook(physics: StackRun) -> None:
    account = physics.one("kubernetes:core/v1:ServiceAccount").inputs["metadata"]
    role_arn = physics.outputs["runtimeRoleArn"]
    assert account["annotations"] == {"eks.amazonaws.com/role-arn": role_arn}

    pod = _deployment(physics)["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AWS_ROLE_ARN"] == role_arn
    token_file = env["AWS_WEB_IDENTITY_TOKEN_FILE"]
    (volume,) = [v for v in pod["volumes"] if "projected" in v]
    (source,) = volume["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert token_file == f"{mount['mountPath']}/{source['serviceAccountToken']['path']}"


def test_deployment_is_a_hardened_singleton(example: StackRun) -> None:
    spec = _deployment(example)
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["progressDeadlineSeconds"] > 0
    (container,) = spec["template"]["spec"]["containers"]
    assert container["readinessProbe"] and container["livenessProbe"]
    assert set(container["resources"]) == {"requests", "limits"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert container["envFrom"] == [
        {
            "configMapRef": {
                "name": example.one("kubernetes:core/v1:ConfigMap").inputs["metadata"]["name"]
            }
        }
    ]


def test_service_exposes_the_kubelet_api_and_a_pdb_covers_the_runtime(example: StackRun) -> None:
    service = example.one("kubernetes:core/v1:Service").inputs["spec"]
    assert {p["name"]: p["port"] for p in service["ports"]} == {"kubelet": 10250, "metrics": 8080}
    pdb = example.one("kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    labels = _deployment(example)["selector"]["matchLabels"]
    assert pdb["selector"]["matchLabels"] == labels == service["selector"]


def test_rbac_is_limited_to_what_one_virtual_node_needs(physics: StackRun) -> None:
    rules = physics.one("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole").inputs["rules"]
    granted = {
        (resource, verb)
        for rule in rules
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert ("nodes/status", "patch") in granted and ("pods/status", "update") in granted
    assert ("secrets", "get") in granted and ("secrets", "list") not in granted
    assert not any(verb == "*" or resource == "*" for resource, verb in granted)
    node_changes = [r for r in rules if "patch" in r["verbs"] and r["resources"] == ["nodes"]]
    assert all(r["resourceNames"] == ["orca-physics"] for r in node_changes)

    lease = physics.one("kubernetes:rbac.authorization.k8s.io/v1:Role").inputs
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert {v for r in lease["rules"] for v in r["verbs"]} == {"get", "create", "update"}


def test_probes_use_the_health_endpoint_with_or_without_the_kubelet_api() -> None:
    run = run_stack(physics_with(kubeletTlsSecret=None))
    (container,) = _deployment(run)["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == int(run.outputs["runtimeSettings"]["ORCA_HEALTH_PORT"])
    assert not any(k.startswith("ORCA_KUBELET_TLS") for k in run.outputs["runtimeSettings"])
    assert json.loads(run.outputs["runtimeSettings"]["ORCA_ALLOWED_INSTANCE_TYPES"])
