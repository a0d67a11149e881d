"""The runtime in the cluster: one Deployment per department, deployed with pulumi-kubernetes.

The provider is explicit (the stack's secret kubeconfig) and carries a stable
``cluster_identifier``, so rotating the kubeconfig's credentials does not replace every
object. The runtime's AWS identity reaches it without a webhook: with IRSA the service
account is annotated and the Deployment mounts a projected token for ``sts.amazonaws.com``
and sets ``AWS_ROLE_ARN`` and ``AWS_WEB_IDENTITY_TOKEN_FILE`` itself, as the EKS webhook
would; without IRSA it reads the access key from a Secret.

The Deployment runs one replica with the Recreate strategy: two runtimes for one node would
both launch for the same pods. Its settings come from :func:`orca_infra.settings.runtime_settings`
through a ConfigMap whose checksum the pod template carries, so a settings change restarts
the runtime. With the kubelet API's certificate, key and client CA configured (secrets), the
stack creates the kubernetes.io/tls Secret the runtime mounts; without them none is mounted
and the kubelet API is off. The RBAC lives in :mod:`orca_infra.rbac`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from orca import tags
from orca_infra.config import StackConfig
from orca_infra.policies import SERVICE_ACCOUNT_AUDIENCE
from orca_infra.rbac import runtime_rbac
from orca_infra.settings import HEALTH_PORT, KUBELET_PORT, KUBELET_TLS_DIR, settings_checksum

TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
RUNTIME_USER = 65532
# The pod template carries the settings' checksum, so changed settings roll the runtime.
SETTINGS_CHECKSUM_ANNOTATION = "orca.research/settings-sha256"
# How long `pulumi up` waits for the runtime to become ready before it fails: the same as
# the Deployment's progress deadline, so a pod that never starts ends the update clearly.
ROLLOUT_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class RuntimeDeploymentArgs:
    config: StackConfig
    settings: pulumi.Input[dict[str, str]]
    role_arn: pulumi.Input[str] | None
    access_key: aws.iam.AccessKey | None


class RuntimeDeployment(pulumi.ComponentResource):
    """Namespace, identity, RBAC, settings, Deployment, Service and PDB of one runtime."""

    def __init__(
        self, name: str, args: RuntimeDeploymentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:cluster:RuntimeDeployment", name, None, opts)
        config = args.config
        self._name = name
        self._config = config
        self._labels = {
            "app.kubernetes.io/name": "orca",
            "app.kubernetes.io/instance": config.node_name,
            "app.kubernetes.io/component": "runtime",
            tags.DEPARTMENT_LABEL: config.department,
        }

        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=config.kubeconfig,
            cluster_identifier=config.cluster_name,
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        namespace = config.runtime_namespace

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=self._meta(namespace, namespace=None), opts=child
        )
        in_ns = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[ns])

        annotations = {}
        if args.role_arn is not None:
            annotations["eks.amazonaws.com/role-arn"] = args.role_arn
        k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={**self._meta(config.service_account), "annotations": annotations},
            opts=in_ns,
        )
        runtime_rbac(name, config, self._labels, child, in_ns)

        settings = k8s.core.v1.ConfigMap(
            f"{name}-settings",
            metadata=self._meta(f"{config.node_name}-settings"),
            data=args.settings,
            opts=in_ns,
        )
        kubelet_tls = None
        if config.kubelet_tls:
            kubelet_tls = k8s.core.v1.Secret(
                f"{name}-kubelet-tls",
                metadata=self._meta(config.kubelet_tls_secret_name),
                type="kubernetes.io/tls",
                string_data={
                    "tls.crt": config.kubelet_tls_cert,
                    "tls.key": config.kubelet_tls_key,
                    "ca.crt": config.kubelet_client_ca,
                },
                opts=in_ns,
            )
        credentials = None
        if args.access_key is not None:
            credentials = k8s.core.v1.Secret(
                f"{name}-aws",
                metadata=self._meta(f"{config.node_name}-aws-credentials"),
                type="Opaque",
                string_data={
                    "AWS_ACCESS_KEY_ID": args.access_key.id,
                    "AWS_SECRET_ACCESS_KEY": args.access_key.secret,
                },
                opts=in_ns,
            )

        checksum = pulumi.Output.from_input(args.settings).apply(settings_checksum)
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-runtime",
            metadata={
                **self._meta(config.node_name),
                # pulumi-kubernetes waits this long for the rollout (customTimeouts agrees).
                "annotations": {"pulumi.com/timeoutSeconds": str(ROLLOUT_TIMEOUT_SECONDS)},
            },
            spec=self._deployment_spec(settings, checksum, credentials, kubelet_tls, args.role_arn),
            opts=pulumi.ResourceOptions.merge(
                in_ns,
                pulumi.ResourceOptions(
                    custom_timeouts=pulumi.CustomTimeouts(
                        create=f"{ROLLOUT_TIMEOUT_SECONDS}s", update=f"{ROLLOUT_TIMEOUT_SECONDS}s"
                    )
                ),
            ),
        )
        k8s.core.v1.Service(
            f"{name}-kubelet",
            metadata=self._meta(config.node_name),
            spec={
                "type": "ClusterIP",
                "selector": self._labels,
                "ports": [
                    {
                        "name": "kubelet",
                        "port": KUBELET_PORT,
                        "targetPort": "kubelet",
                        "protocol": "TCP",
                    },
                    {
                        "name": "metrics",
                        "port": HEALTH_PORT,
                        "targetPort": "health",
                        "protocol": "TCP",
                    },
                ],
            },
            opts=in_ns,
        )
        # The runtime adopts what exists when it restarts, so evicting it for a drain is
        # safe; the budget states that one replica may go, and never two at once.
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self._meta(config.node_name),
            spec={"maxUnavailable": 1, "selector": {"matchLabels": self._labels}},
            opts=in_ns,
        )
        self.register_outputs(
            {"namespace": namespace, "deployment": self.deployment.metadata["name"]}
        )

    def _meta(self, name: str, namespace: str | None = "") -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "labels": self._labels}
        if namespace is not None:
            meta["namespace"] = namespace or self._config.runtime_namespace
        return meta

    def _deployment_spec(
        self,
        settings: k8s.core.v1.ConfigMap,
        checksum: pulumi.Output[str],
        credentials: k8s.core.v1.Secret | None,
        kubelet_tls: k8s.core.v1.Secret | None,
        role_arn: pulumi.Input[str] | None,
    ) -> dict[str, Any]:
        config = self._config
        env: list[dict[str, Any]] = [
            {
                "name": "ORCA_NODE_INTERNAL_IP",
                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
            },
            {"name": "AWS_REGION", "value": config.region},
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        ]
        volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
        mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]

        if role_arn is not None:
            # What the EKS pod identity webhook would inject; no webhook is assumed.
            env += [
                {"name": "AWS_ROLE_ARN", "value": role_arn},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
            ]
            volumes.append(
                {
                    "name": "aws-token",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": SERVICE_ACCOUNT_AUDIENCE,
                                    "expirationSeconds": 86400,
                                    "path": "token",
                                }
                            }
                        ]
                    },
                }
            )
            mounts.append({"name": "aws-token", "mountPath": TOKEN_DIR, "readOnly": True})
        elif credentials is not None:
            secret = credentials.metadata["name"]
            env += [
                {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
                for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            ]

        if kubelet_tls is not None:
            volumes.append(
                {"name": "kubelet-tls", "secret": {"secretName": kubelet_tls.metadata["name"]}}
            )
            mounts.append({"name": "kubelet-tls", "mountPath": KUBELET_TLS_DIR, "readOnly": True})

        container = {
            "name": "runtime",
            "image": config.runtime_image,
            "command": ["orca", "run"],
            "envFrom": [{"configMapRef": {"name": settings.metadata["name"]}}],
            "env": env,
            "ports": [
                {"name": "kubelet", "containerPort": KUBELET_PORT, "protocol": "TCP"},
                {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
            ],
            # /readyz: the node is registered and its pods listed; /healthz: every loop runs.
            "readinessProbe": {
                "httpGet": {"path": "/readyz", "port": "health"},
                "periodSeconds": 10,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "health"},
                "initialDelaySeconds": 30,
                "periodSeconds": 20,
                "failureThreshold": 3,
            },
            "resources": {
                "requests": {"cpu": "100m", "memory": "256Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUNTIME_USER,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": mounts,
        }
        return {
            "replicas": 1,
            # Two runtimes for one node must never run at once.
            "strategy": {"type": "Recreate"},
            "progressDeadlineSeconds": ROLLOUT_TIMEOUT_SECONDS,
            "selector": {"matchLabels": self._labels},
            "template": {
                "metadata": {
                    "labels": self._labels,
                    "annotations": {SETTINGS_CHECKSUM_ANNOTATION: checksum},
                },
                "spec": {
                    "serviceAccountName": config.service_account,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUNTIME_USER,
                        "fsGroup": RUNTIME_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        }
