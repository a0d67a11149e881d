"""The pod bundle: what an instance needs to run its pod, resolved by the runtime.

User data must stay free of secrets, so the pod's spec, with every reference the
API server would resolve for a kubelet already resolved (env from ConfigMaps and
Secrets and field references; the files of ConfigMap, Secret, downwardAPI and
projected volumes, service-account tokens included; the registry credentials of
``imagePullSecrets``), travels as a bundle object in the envelope's encrypted
bucket, readable only by instances of the department's role. The runtime writes it
before the launch and deletes it when the pod ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from orca import registry_auth
from orca.references import Kind, MissingReference, ReferenceLookup, References
from orca.volume_files import BundleFile, VolumeResolver, pod_field

__all__ = ["BundleFile", "MissingReference", "PodBundle", "ReferenceLookup", "build_bundle"]

BUNDLE_SCHEMA_VERSION = 1
_ENV_FROM: tuple[tuple[Kind, str], ...] = (("ConfigMap", "configMapRef"), ("Secret", "secretRef"))
_VALUE_FROM: tuple[tuple[Kind, str], ...] = (
    ("ConfigMap", "configMapKeyRef"),
    ("Secret", "secretKeyRef"),
)


class PodBundle(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    version: int = BUNDLE_SCHEMA_VERSION
    pod_uid: str
    namespace: str
    name: str
    # The pod's spec exactly as the API server serves it (camelCase keys).
    spec: dict[str, Any]
    # Container name -> environment, in declaration order, with valueFrom resolved.
    # Init containers and containers share one namespace of names, as in Kubernetes.
    env: dict[str, dict[str, str]] = Field(default_factory=dict, repr=False)
    # Volume name -> files, for the pod's configMap, secret, downwardAPI and projected
    # volumes; the agent writes them and mounts them read-only.
    volumes: dict[str, list[BundleFile]] = Field(default_factory=dict, repr=False)
    # Registry -> Docker credential ("auth", "identitytoken") from the imagePullSecrets.
    registry_credentials: dict[str, dict[str, str]] = Field(default_factory=dict, repr=False)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, body: str | bytes) -> PodBundle:
        return cls.model_validate_json(body)


def _container_env(
    pod: Mapping[str, Any], container: Mapping[str, Any], references: References
) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, field in _ENV_FROM:
            ref = source.get(field)
            if ref is None:
                continue
            values = references.required(kind, ref["name"], bool(ref.get("optional")))
            env.update({prefix + k: v.decode() for k, v in (values or {}).items()})

    for var in container.get("env") or []:
        value_from = var.get("valueFrom")
        if value_from is None:
            env[var["name"]] = var.get("value", "")
            continue
        value: str | None = None
        for kind, field in _VALUE_FROM:
            if field in value_from:
                ref = value_from[field]
                found = references.key(kind, ref["name"], ref["key"], bool(ref.get("optional")))
                value = None if found is None else found.decode()
        if "fieldRef" in value_from:
            # status.podIP and the like are not known before the instance exists.
            value = pod_field(pod, value_from["fieldRef"]["fieldPath"]) or ""
        if value is not None:
            env[var["name"]] = value
    return env


def _registry_credentials(
    spec: Mapping[str, Any], references: References
) -> dict[str, dict[str, str]]:
    credentials: dict[str, dict[str, str]] = {}
    for ref in spec.get("imagePullSecrets") or []:
        name = ref.get("name")
        if not name:
            continue
        values = references.required("Secret", name)
        assert values is not None
        found = registry_auth.credentials_from_secret(name, references.secret_type(name), values)
        registry_auth.merge(credentials, found)
    return credentials


def build_bundle(
    pod: Mapping[str, Any],
    lookup: ReferenceLookup,
    *,
    deadline: datetime | None = None,
    now: datetime | None = None,
    allocatable: Mapping[str, Decimal] | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> PodBundle:
    """The bundle for ``pod``, resolved as the kubelet would resolve it.

    Raises :class:`MissingReference` when a non-optional ConfigMap, Secret, key or
    service account is missing (like the kubelet, the caller waits and tries again),
    and :class:`~orca.registry_auth.InvalidPullSecret` for an unusable pull secret.
    ``deadline`` and ``now`` size service-account tokens to outlive the pod;
    ``allocatable`` is the instance's capacity, for resource fields without a limit.
    """
    meta = pod["metadata"]
    spec = pod["spec"]
    references = References(meta["namespace"], lookup)
    env = {
        container["name"]: _container_env(pod, container, references)
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or [])
    }
    resolver = VolumeResolver(
        pod,
        references,
        lookup,
        deadline=deadline,
        now=now,
        allocatable=allocatable,
        warn=warn,
    )
    return PodBundle(
        pod_uid=meta["uid"],
        namespace=meta["namespace"],
        name=meta["name"],
        spec=spec,
        env=env,
        volumes=resolver.resolve(),
        registry_credentials=_registry_credentials(spec, references),
    )
