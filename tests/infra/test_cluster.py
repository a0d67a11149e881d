"""The runtime in the cluster, and the settings it is handed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from orca_infra.launch_templates import AMI_PARAMETERS

from orca.settings import LAUNCH_TEMPLATE_KINDS, Settings, load_settings
from tests.infra.conftest import physics_with
from tests.infra.harness import SECRET_SIGNATURE, StackRun, run_stack


def _deployment(run: StackRun) -> dict[str, Any]:
    spec: dict[str, Any] = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]
    return spec


def _settings(run: StackRun) -> dict[str, str]:
    settings: dict[str, str] = run.outputs["runtimeSettings"]
    return settings


KUBELET_TLS = {
    "kubeletTlsCert": "-----BEGIN CERTIFICATE-----\nserving\n-----END CERTIFICATE-----\n",
    "kubeletTlsKey": "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n",
    "kubeletClientCa": "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
}


@pytest.fixture(scope="module")
def with_kubelet_tls() -> StackRun:
    return run_stack(physics_with(**KUBELET_TLS))


def _load_generated_settings(
    run: StackRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    data = run.one("kubernetes:core/v1:ConfigMap").inputs["data"]
    assert data == run.outputs["runtimeSettings"]
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    for key, value in data.items():
        # The kubelet certificate files are mounted from a Secret in the pod.
        value = value.replace("/etc/orca/kubelet-tls", str(tmp_path))
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCA_NODE_INTERNAL_IP", "10.1.2.3")
    return load_settings()


def test_generated_settings_are_accepted_by_the_runtime(
    example: StackRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _load_generated_settings(example, monkeypatch, tmp_path)

    assert settings.node_name == example.outputs["nodeName"]
    assert settings.subnet_ids == example.outputs["subnetIds"]
    assert settings.security_group_ids == [example.outputs["securityGroupId"]]
    assert settings.launch_templates == example.outputs["launchTemplateIds"]
    assert settings.status_queue_url == example.outputs["statusQueueUrl"]
    assert settings.bundle_bucket == example.outputs["bundleBucket"]
    assert settings.log_group == example.outputs["logGroup"]


def test_the_runtime_holds_the_stack_budget_in_the_stack_ledger(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = run_stack(
        physics_with(
            namespaceShares={"default": 40},
            namespaceCaps={"default": {"instances": 4, "gpus": 8}, "imaging": {"gpus": 2}},
            budgetWhenRefused="fail",
            budgetOverLimit="stop",
            budgetHardCeilingPercent="5",
        )
    )
    settings = _load_generated_settings(run, monkeypatch, tmp_path)

    budget = settings.budget
    assert budget is not None
    assert budget.ledger_table == run.outputs["ledgerTable"]
    assert budget.monthly_usd == 100000
    assert budget.namespace_limit_usd("default") == 40000
    assert {n: (c.instances, c.gpus) for n, c in budget.namespace_caps.items()} == {
        "default": (4, 8),
        "imaging": (None, 2),
    }
    assert (budget.when_refused, budget.over_limit) == ("fail", "stop")
    assert budget.hard_ceiling_usd == 105000


def test_by_default_refused_pods_wait_and_running_pods_finish(
    example: StackRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    budget = _load_generated_settings(example, monkeypatch, tmp_path).budget

    assert budget is not None
    assert (budget.when_refused, budget.over_limit) == ("wait", "finish")
    assert budget.namespace_shares == {}


def test_instances_run_their_agent_from_the_runtime_image(
    example: StackRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = _load_generated_settings(example, monkeypatch, tmp_path)
    [container] = _deployment(example)["template"]["spec"]["containers"]

    assert settings.agent_image == container["image"]
    assert settings.agent_image == "registry.example.edu/orca/runtime:0.1.0"


def test_the_runtime_is_handed_the_reservation_group_only_when_the_stack_has_one(
    physics: StackRun, biology: StackRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    group = physics.one("aws:resourcegroups/group:Group").outputs["arn"]

    with_group = _load_generated_settings(physics, monkeypatch, tmp_path)
    assert with_group.capacity_reservation_group_arn == group
    assert _settings(physics)["ORCA_CAPACITY_RESERVATION_GROUP_ARN"] == group
    assert group.startswith("arn:aws:resource-groups:us-east-1:")

    monkeypatch.delenv("ORCA_CAPACITY_RESERVATION_GROUP_ARN")
    without = _load_generated_settings(biology, monkeypatch, tmp_path)
    assert without.capacity_reservation_group_arn is None
    assert "ORCA_CAPACITY_RESERVATION_GROUP_ARN" not in _settings(biology)


def test_examples_mount_no_kubelet_secret_that_nothing_creates(example: StackRun) -> None:
    pod = _deployment(example)["template"]["spec"]
    assert not any("secret" in v for v in pod["volumes"])
    assert example.of_type("kubernetes:core/v1:Secret") == []
    assert not any(k.startswith("ORCA_KUBELET_") and "FILE" in k for k in _settings(example))


def test_kubelet_tls_config_creates_the_secret_the_runtime_mounts(
    with_kubelet_tls: StackRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = with_kubelet_tls.one("kubernetes:core/v1:Secret").inputs
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["name"] == "orca-physics-kubelet-tls"
    assert secret["metadata"]["namespace"] == "orca-physics"
    assert SECRET_SIGNATURE in secret["stringData"], "the key must stay a Pulumi secret"
    assert with_kubelet_tls.warnings == []
    assert secret["stringData"]["value"] == {
        "tls.crt": KUBELET_TLS["kubeletTlsCert"],
        "tls.key": KUBELET_TLS["kubeletTlsKey"],
        "ca.crt": KUBELET_TLS["kubeletClientCa"],
    }

    pod = _deployment(with_kubelet_tls)["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "orca-physics-kubelet-tls"
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    settings = _load_generated_settings(with_kubelet_tls, monkeypatch, tmp_path)
    assert settings.kubelet_tls_cert_file == tmp_path / "tls.crt"
    assert settings.kubelet_client_ca_file == tmp_path / "ca.crt"
    assert _settings(with_kubelet_tls)["ORCA_KUBELET_TLS_CERT_FILE"].startswith(mount["mountPath"])


def test_kubelet_tls_secret_name_can_be_chosen() -> None:
    run = run_stack(physics_with(kubeletTlsSecret="kubelet.orca-physics", **KUBELET_TLS))
    secret = run.one("kubernetes:core/v1:Secret").inputs
    assert secret["metadata"]["name"] == "kubelet.orca-physics"
    pod = _deployment(run)["template"]["spec"]
    assert [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v] == [
        "kubelet.orca-physics"
    ]


def test_changed_settings_roll_the_runtime(physics: StackRun) -> None:
    def checksum(run: StackRun) -> str:
        annotations = _deployment(run)["template"]["metadata"]["annotations"]
        value: str = annotations["orca.research/settings-sha256"]
        return value

    same = run_stack(physics_with())
    changed = run_stack(physics_with(maxInstances="41"))
    assert len(checksum(physics)) == 64
    assert checksum(same) == checksum(physics)
    assert checksum(changed) != checksum(physics)
    assert _settings(changed)["ORCA_LIMITS__MAX_PODS"] == "41"


def test_up_fails_within_ten_minutes_when_the_runtime_never_becomes_ready(
    example: StackRun,
) -> None:
    deployment = example.one("kubernetes:apps/v1:Deployment").inputs
    assert deployment["metadata"]["annotations"]["pulumi.com/timeoutSeconds"] == "600"
    assert deployment["spec"]["progressDeadlineSeconds"] == 600


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


CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"


def _granted(rules: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (resource, verb)
        for rule in rules
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _role(run: StackRun, suffix: str) -> dict[str, Any]:
    return next(r.inputs for r in run.of_type(CLUSTER_ROLE) if r.name.endswith(suffix))


def test_rbac_is_limited_to_what_one_virtual_node_needs(physics: StackRun) -> None:
    rules = _role(physics, "-runtime")["rules"]
    granted = _granted(rules)
    assert ("nodes/status", "patch") in granted and ("pods/status", "update") in granted
    assert not any(resource in ("secrets", "configmaps") for resource, _ in granted)
    assert _granted(_role(physics, "-pod-env")["rules"]) == {
        ("secrets", "get"),
        ("configmaps", "get"),
        # Projected service account tokens, requested bound to the pod as a kubelet does.
        ("serviceaccounts/token", "create"),
    }
    for role in physics.of_type(CLUSTER_ROLE):
        assert not any(v == "*" or r == "*" for r, v in _granted(role.inputs["rules"]))
    node_changes = [r for r in rules if "patch" in r["verbs"] and r["resources"] == ["nodes"]]
    assert all(r["resourceNames"] == ["orca-physics"] for r in node_changes)

    lease = physics.one("kubernetes:rbac.authorization.k8s.io/v1:Role").inputs
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert {v for r in lease["rules"] for v in r["verbs"]} == {"get", "create", "update"}


def test_without_burst_namespaces_secrets_are_readable_cluster_wide(physics: StackRun) -> None:
    bound = {
        b.inputs["roleRef"]["name"]: b.inputs["subjects"]
        for b in physics.of_type(CLUSTER_ROLE_BINDING)
    }
    assert set(bound) == {"orca-physics-runtime", "orca-physics-pod-env"}
    assert all(
        b.inputs["metadata"]["namespace"] == "kube-node-lease"
        for b in physics.of_type(ROLE_BINDING)
    )


def test_burst_namespaces_limit_secret_reads_to_those_namespaces() -> None:
    run = run_stack(physics_with(burstNamespaces=["physics-lab", "physics-ml"]))
    cluster_wide = {b.inputs["roleRef"]["name"] for b in run.of_type(CLUSTER_ROLE_BINDING)}
    assert cluster_wide == {"orca-physics-runtime"}
    scoped = {
        b.inputs["metadata"]["namespace"]: b.inputs
        for b in run.of_type(ROLE_BINDING)
        if b.inputs["roleRef"]["name"] == "orca-physics-pod-env"
    }
    assert set(scoped) == {"physics-lab", "physics-ml"}
    for binding in scoped.values():
        assert binding["roleRef"]["kind"] == "ClusterRole"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "orca-physics", "namespace": "orca-physics"}
        ]


def test_probes_use_the_health_endpoint_with_or_without_the_kubelet_api() -> None:
    run = run_stack(physics_with())
    (container,) = _deployment(run)["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == int(run.outputs["runtimeSettings"]["ORCA_HEALTH_PORT"])
    assert not any(k.startswith("ORCA_KUBELET_TLS") for k in run.outputs["runtimeSettings"])
    assert json.loads(run.outputs["runtimeSettings"]["ORCA_ALLOWED_INSTANCE_TYPES"])
