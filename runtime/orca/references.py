"""What a pod's spec refers to in the API: ConfigMaps, Secrets and service-account tokens.

The runtime resolves these for the agent, which cannot reach the API server, as the
kubelet resolves them for its pods: a :class:`References` reads each ConfigMap and
Secret of one pod once, and a missing object or key that is not ``optional`` raises
:class:`MissingReference`, on which the pod waits ``Pending`` as it would on a kubelet.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, Literal, Protocol

Kind = Literal["ConfigMap", "Secret"]


class ReferenceLookup(Protocol):
    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def request_token(
        self, namespace: str, service_account: str, spec: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """TokenRequest ``spec`` for the service account; its ``status``, None if there is
        no such service account."""
        ...


class MissingReference(Exception):
    """A ConfigMap, Secret or key the pod needs does not exist (yet); the pod waits."""


class References:
    """One pod's view of its namespace's ConfigMaps and Secrets, each read at most once.

    Values are bytes: a ConfigMap's ``data`` (UTF-8) and ``binaryData``, a Secret's
    ``data`` decoded from base64, as the kubelet writes them into volumes.
    """

    def __init__(self, namespace: str, lookup: ReferenceLookup) -> None:
        self.namespace = namespace
        self.lookup = lookup
        self._cache: dict[tuple[Kind, str], dict[str, bytes] | None] = {}
        self._types: dict[str, str] = {}

    def values(self, kind: Kind, name: str) -> dict[str, bytes] | None:
        """Every key of the object, or None when it does not exist."""
        if (kind, name) not in self._cache:
            self._cache[(kind, name)] = self._read(kind, name)
        return self._cache[(kind, name)]

    def secret_type(self, name: str) -> str | None:
        self.values("Secret", name)
        return self._types.get(name)

    def required(self, kind: Kind, name: str, optional: bool = False) -> dict[str, bytes] | None:
        """The object's values; None if it is missing and optional, else MissingReference."""
        values = self.values(kind, name)
        if values is None and not optional:
            raise MissingReference(f"{kind} {self.namespace}/{name} not found")
        return values

    def key(self, kind: Kind, name: str, key: str, optional: bool = False) -> bytes | None:
        """One key's value; None if it (or the object) is missing and optional."""
        values = self.values(kind, name)
        if values is None or key not in values:
            if optional:
                return None
            what = f"{kind} {self.namespace}/{name}"
            missing = what if values is None else f"key {key!r} in {what}"
            raise MissingReference(f"{missing} not found")
        return values[key]

    def _read(self, kind: Kind, name: str) -> dict[str, bytes] | None:
        if kind == "ConfigMap":
            found = self.lookup.config_map(self.namespace, name)
            if found is None:
                return None
            values = {k: str(v).encode() for k, v in (found.get("data") or {}).items()}
            binary = found.get("binaryData") or {}
            values.update({k: base64.b64decode(v) for k, v in binary.items()})
            return values
        found = self.lookup.secret(self.namespace, name)
        if found is None:
            return None
        self._types[name] = str(found.get("type") or "Opaque")
        return {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}
