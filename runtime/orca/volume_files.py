"""ConfigMap, Secret, downwardAPI and projected volumes, resolved into files for the bundle.

A kubelet builds these volumes on its node from the API; the agent cannot reach the
API server, so the runtime builds their contents the way the kubelet does and they
travel, encrypted, in the pod's bundle:

- ``items`` pick keys and name their files (``path``); without items every key becomes
  a file named by the key; a missing object or key fails unless ``optional`` (the pod
  waits, :class:`~orca.references.MissingReference`), and an optional missing object
  gives an empty volume;
- a file's mode is its item's ``mode``, else the volume's ``defaultMode``, else 0644;
- downwardAPI files hold a pod field (``metadata.labels`` and ``metadata.annotations``
  as sorted ``key="value"`` lines) or a container's resource (``limits.cpu`` rounded up
  to whole ``divisor`` units; an unset limit is the instance's capacity, the node
  allocatable of a kubelet);
- a ``serviceAccountToken`` source is a TokenRequest bound to the pod, for its
  ``audience``. The agent cannot refresh it as a kubelet does at 80% of its life, so
  the runtime asks for a token that outlives the pod's deadline; the API server may cap
  the lifetime (``--service-account-max-token-expiration``), and then the pod is told.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity
from pydantic import BaseModel, ConfigDict, Field

from orca.references import Kind, MissingReference, ReferenceLookup, References

DEFAULT_MODE = 0o644
# TokenRequest defaults and minimum (authentication.k8s.io/v1 TokenRequestSpec).
DEFAULT_TOKEN_SECONDS = 3600
MIN_TOKEN_SECONDS = 600
# Beyond the pod's deadline: the runtime's stop grace, and clock skew.
TOKEN_MARGIN = timedelta(minutes=10)


class BundleFile(BaseModel):
    """One file of a volume: its path inside the volume, content and permission bits."""

    model_config = ConfigDict(frozen=True)

    path: str
    # Base64 of the content, which may be binary; never shown in a repr (it may be secret).
    data: str = Field(repr=False)
    mode: int = DEFAULT_MODE

    @classmethod
    def of(cls, path: str, content: bytes, mode: int) -> BundleFile:
        return cls(path=path, data=base64.b64encode(content).decode(), mode=mode)

    def content(self) -> bytes:
        return base64.b64decode(self.data)


def format_map(values: Mapping[str, str]) -> str:
    """Labels or annotations as the kubelet's downward API writes them: sorted key="value"."""
    lines = (f"{key}={json.dumps(values[key], ensure_ascii=False)}" for key in sorted(values))
    return "\n".join(lines)


def pod_field(pod: Mapping[str, Any], path: str) -> str | None:
    """A downward API ``fieldPath`` of the pod, None if it is not known before the launch."""
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
        values = meta.get(source) or {}
        if path == prefix:
            return format_map(values)
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(values.get(path[len(prefix) + 2 : -2], ""))
    return None


class VolumeResolver:
    """Files of every volume of one pod that the runtime must supply."""

    def __init__(
        self,
        pod: Mapping[str, Any],
        references: References,
        lookup: ReferenceLookup,
        *,
        deadline: datetime | None = None,
        now: datetime | None = None,
        allocatable: Mapping[str, Decimal] | None = None,
        warn: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.pod = pod
        self.spec: Mapping[str, Any] = pod.get("spec") or {}
        self.references = references
        self.lookup = lookup
        self.deadline = deadline
        self.now = now
        self.allocatable = allocatable or {}
        self.warn = warn
        self._tokens: dict[tuple[str, int], str] = {}

    def resolve(self) -> dict[str, list[BundleFile]]:
        volumes: dict[str, list[BundleFile]] = {}
        for volume in self.spec.get("volumes") or []:
            files = self.files(volume)
            if files is not None:
                volumes[str(volume["name"])] = files
        return volumes

    def files(self, volume: Mapping[str, Any]) -> list[BundleFile] | None:
        """The volume's files; None for a volume the runtime does not supply (emptyDir)."""
        if "configMap" in volume:
            source = volume["configMap"] or {}
            mode = source.get("defaultMode", DEFAULT_MODE)
            return list(self._keyed("ConfigMap", source["name"], source, mode))
        if "secret" in volume:
            source = volume["secret"] or {}
            mode = source.get("defaultMode", DEFAULT_MODE)
            return list(self._keyed("Secret", source["secretName"], source, mode))
        if "downwardAPI" in volume:
            source = volume["downwardAPI"] or {}
            mode = source.get("defaultMode", DEFAULT_MODE)
            return list(self._downward(source.get("items") or [], mode))
        if "projected" in volume:
            return list(self._projected(volume["projected"] or {}))
        return None

    def _keyed(
        self, kind: Kind, name: str, source: Mapping[str, Any], mode: int
    ) -> Iterator[BundleFile]:
        optional = bool(source.get("optional"))
        values = self.references.required(kind, name, optional)
        if values is None:
            return
        items = source.get("items")
        if not items:
            for key in sorted(values):
                yield BundleFile.of(key, values[key], mode)
            return
        for item in items:
            content = self.references.key(kind, name, item["key"], optional)
            if content is not None:
                yield BundleFile.of(item["path"], content, item.get("mode", mode))

    def _downward(self, items: list[Mapping[str, Any]], mode: int) -> Iterator[BundleFile]:
        for item in items:
            if "fieldRef" in item:
                path = item["fieldRef"]["fieldPath"]
                # The API server admits only metadata fields in volumes; all are known here.
                value = pod_field(self.pod, path) or ""
            else:
                value = self._resource(item["resourceFieldRef"])
            yield BundleFile.of(item["path"], value.encode(), item.get("mode", mode))

    def _resource(self, ref: Mapping[str, Any]) -> str:
        spec = self.spec
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        name = ref.get("containerName")
        container = next((c for c in containers if c.get("name") == name), None)
        if container is None:
            return "0"
        section, _, resource = str(ref["resource"]).partition(".")
        given = ((container.get("resources") or {}).get(section) or {}).get(resource)
        if given is not None:
            amount = Decimal(parse_quantity(str(given)))
        elif section == "limits":
            amount = self.allocatable.get(resource, Decimal(0))
        else:
            amount = Decimal(0)
        divisor = Decimal(parse_quantity(str(ref.get("divisor") or "1")))
        return str(math.ceil(amount / divisor))

    def _projected(self, projected: Mapping[str, Any]) -> Iterator[BundleFile]:
        mode = projected.get("defaultMode", DEFAULT_MODE)
        for source in projected.get("sources") or []:
            if "configMap" in source:
                config_map = source["configMap"]
                yield from self._keyed("ConfigMap", config_map["name"], config_map, mode)
            elif "secret" in source:
                yield from self._keyed("Secret", source["secret"]["name"], source["secret"], mode)
            elif "downwardAPI" in source:
                yield from self._downward(source["downwardAPI"].get("items") or [], mode)
            elif "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                content = self.token(token.get("audience") or "", token.get("expirationSeconds"))
                yield BundleFile.of(token["path"], content.encode(), mode)

    def token(self, audience: str, expiration_seconds: int | None) -> str:
        """A token for the pod's service account, bound to the pod, outliving its deadline."""
        seconds = max(int(expiration_seconds or DEFAULT_TOKEN_SECONDS), MIN_TOKEN_SECONDS)
        if self.deadline is not None and self.now is not None:
            needed = (self.deadline + TOKEN_MARGIN - self.now).total_seconds()
            seconds = max(seconds, math.ceil(needed))
        if (audience, seconds) in self._tokens:
            return self._tokens[(audience, seconds)]

        meta = self.pod["metadata"]
        account = str(self.spec.get("serviceAccountName") or "default")
        spec = {
            "audiences": [audience] if audience else [],
            "expirationSeconds": seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        }
        status = self.lookup.request_token(meta["namespace"], account, spec)
        if status is None:
            raise MissingReference(f"ServiceAccount {meta['namespace']}/{account} not found")
        expires = status.get("expirationTimestamp")
        if expires and self.deadline is not None:
            expiry = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
            if expiry < self.deadline:
                self.warn(
                    f"The service account token of {account} expires at {expires}, before "
                    f"the pod's deadline {self.deadline.isoformat()}: the API server caps "
                    "token lifetimes, and ORCA cannot refresh a token on a burst instance"
                )
        self._tokens[(audience, seconds)] = str(status["token"])
        return self._tokens[(audience, seconds)]
