"""What the runtime may do in the cluster: what a kubelet needs for one node, and no more.

The runtime's ClusterRole covers its node (create, list and watch cannot be limited by
name; changes can), the pods bound to it and their status, and events. Its node lease is
granted by a Role in ``kube-node-lease``.

A pod's env and volumes may name Secrets and ConfigMaps, and its volumes may project a
service account token; the runtime reads them (and requests the token, bound to the pod, as a
kubelet does) to put them in the pod's encrypted bundle, so it needs ``get`` on ConfigMaps and
Secrets and ``create`` on ``serviceaccounts/token`` in every namespace whose pods burst.
That grant is a ClusterRole of its own: bound cluster-wide by default (the runtime can then
read every Secret in the cluster), or, with ``orca:burstNamespaces``, bound by a RoleBinding
in each listed namespace only. Those namespaces must exist before ``pulumi up``.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from orca_infra.config import StackConfig

NODE_LEASE_NAMESPACE = "kube-node-lease"


def runtime_rbac(
    name: str,
    config: StackConfig,
    labels: dict[str, str],
    child: pulumi.ResourceOptions,
    in_ns: pulumi.ResourceOptions,
) -> None:
    """Declare the runtime's roles and bindings for its service account."""
    node = [config.node_name]
    subject = {
        "kind": "ServiceAccount",
        "name": config.service_account,
        "namespace": config.runtime_namespace,
    }

    def cluster_role(suffix: str, rules: list[dict[str, Any]]) -> k8s.rbac.v1.ClusterRole:
        return k8s.rbac.v1.ClusterRole(
            f"{name}-{suffix}",
            metadata={"name": f"{config.node_name}-{suffix}", "labels": labels},
            rules=rules,
            opts=child,
        )

    def role_ref(kind: str, role: Any) -> dict[str, Any]:
        return {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": kind,
            "name": role.metadata["name"],
        }

    def bind_in(namespace: str, logical_name: str, suffix: str, ref: dict[str, Any]) -> None:
        k8s.rbac.v1.RoleBinding(
            logical_name,
            metadata={
                "name": f"{config.node_name}-{suffix}",
                "namespace": namespace,
                "labels": labels,
            },
            role_ref=ref,
            subjects=[subject],
            opts=in_ns,
        )

    runtime = cluster_role(
        "runtime",
        [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["create", "list", "watch"]},
            {
                "apiGroups": [""],
                "resources": ["nodes"],
                "resourceNames": node,
                "verbs": ["get", "patch", "update"],
            },
            {
                "apiGroups": [""],
                "resources": ["nodes/status"],
                "resourceNames": node,
                "verbs": ["patch", "update"],
            },
            {
                "apiGroups": [""],
                "resources": ["pods"],
                "verbs": ["get", "list", "watch", "patch", "delete"],
            },
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "update"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    )
    k8s.rbac.v1.ClusterRoleBinding(
        f"{name}-runtime",
        metadata={"name": f"{config.node_name}-runtime", "labels": labels},
        role_ref=role_ref("ClusterRole", runtime),
        subjects=[subject],
        opts=child,
    )

    # A pod's env and volumes name ConfigMaps, Secrets and service account tokens; they
    # travel in its encrypted bundle.
    pod_env = cluster_role(
        "pod-env",
        [
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        ],
    )
    if not config.burst_namespaces:
        # Cluster-wide: the runtime can read every Secret in the cluster. Set
        # orca:burstNamespaces to limit this to the namespaces whose pods burst.
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-pod-env",
            metadata={"name": f"{config.node_name}-pod-env", "labels": labels},
            role_ref=role_ref("ClusterRole", pod_env),
            subjects=[subject],
            opts=child,
        )
    for namespace in config.burst_namespaces:
        bind_in(
            namespace, f"{name}-pod-env-{namespace}", "pod-env", role_ref("ClusterRole", pod_env)
        )

    lease = k8s.rbac.v1.Role(
        f"{name}-lease",
        metadata={
            "name": f"{config.node_name}-lease",
            "namespace": NODE_LEASE_NAMESPACE,
            "labels": labels,
        },
        rules=[
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": node,
                "verbs": ["get", "update"],
            },
        ],
        opts=child,
    )
    bind_in(NODE_LEASE_NAMESPACE, f"{name}-lease", "lease", role_ref("Role", lease))
