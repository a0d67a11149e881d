"""The pod bundle: what an instance needs to run its pod, resolved by the runtime.

User data must stay free of secrets, so the pod's spec, with every reference the
API server would resolve for a kubelet (env from ConfigMaps and Secrets, field
references) already resolved, travels as a bundle object in the envelope's
encrypted bucket, readable only by instances of the department's role. The
runtime writes it before the launch and deletes it when the pod ends.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

BUNDLE_SCHEMA_VERSION = 1


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
    env: dict[str, dict[str, str]] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, body: str | bytes) -> PodBundle:
        return cls.model_validate_json(body)


class ReferenceLookup(Protocol):
    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class MissingReference(Exception):
    """A ConfigMap, Secret or key the pod needs does not exist (yet); the pod waits."""


def _field_value(pod: Mapping[str, Any], path: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
    }
    if path in simple:
        return str(simple[path] or "")
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((meta.get(source) or {}).get(path[len(prefix) + 2 : -2], ""))
    # status.podIP and the like are not known before the instance exists.
    return ""


class _EnvResolver:
    def __init__(self, pod: Mapping[str, Any], lookup: ReferenceLookup) -> None:
        self.pod = pod
        self.namespace = pod["metadata"]["namespace"]
        self.lookup = lookup
        self._config_maps: dict[str, dict[str, str] | None] = {}
        self._secrets: dict[str, dict[str, str] | None] = {}

    def config_map(self, name: str) -> dict[str, str] | None:
        if name not in self._config_maps:
            found = self.lookup.config_map(self.namespace, name)
            self._config_maps[name] = None if found is None else dict(found.get("data") or {})
        return self._config_maps[name]

    def secret(self, name: str) -> dict[str, str] | None:
        if name not in self._secrets:
            found = self.lookup.secret(self.namespace, name)
            data = None if found is None else found.get("data") or {}
            self._secrets[name] = (
                None if data is None else {k: base64.b64decode(v).decode() for k, v in data.items()}
            )
        return self._secrets[name]

    def _source(self, kind: str, name: str) -> dict[str, str] | None:
        return self.config_map(name) if kind == "ConfigMap" else self.secret(name)

    def _key(self, kind: str, ref: Mapping[str, Any]) -> str | None:
        values = self._source(kind, ref["name"])
        if values is None or ref["key"] not in values:
            if ref.get("optional"):
                return None
            what = f"{kind} {self.namespace}/{ref['name']}"
            missing = what if values is None else f"key {ref['key']!r} in {what}"
            raise MissingReference(f"{missing} not found")
        return values[ref["key"]]

    def container_env(self, container: Mapping[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = source.get(field)
                if ref is None:
                    continue
                values = self._source(kind, ref["name"])
                if values is None:
                    if ref.get("optional"):
                        continue
                    raise MissingReference(f"{kind} {self.namespace}/{ref['name']} not found")
                env.update({prefix + k: v for k, v in values.items()})

        for var in container.get("env") or []:
            value_from = var.get("valueFrom")
            if value_from is None:
                env[var["name"]] = var.get("value", "")
                continue
            value: str | None
            if "configMapKeyRef" in value_from:
                value = self._key("ConfigMap", value_from["configMapKeyRef"])
            elif "secretKeyRef" in value_from:
                value = self._key("Secret", value_from["secretKeyRef"])
            elif "fieldRef" in value_from:
                value = _field_value(self.pod, value_from["fieldRef"]["fieldPath"])
            else:
                value = None
            if value is not None:
                env[var["name"]] = value
        return env


def build_bundle(pod: Mapping[str, Any], lookup: ReferenceLookup) -> PodBundle:
    """The bundle for ``pod``, with env resolved as the kubelet would resolve it.

    Raises :class:`MissingReference` when a non-optional ConfigMap, Secret or key
    is missing; like the kubelet, the caller waits and tries again.
    """
    meta = pod["metadata"]
    spec = pod["spec"]
    resolver = _EnvResolver(pod, lookup)
    env = {
        container["name"]: resolver.container_env(container)
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or [])
    }
    return PodBundle(
        pod_uid=meta["uid"], namespace=meta["namespace"], name=meta["name"], spec=spec, env=env
    )
