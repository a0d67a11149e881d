"""The resource types the emulator serves, as the API server's discovery describes them.

One table drives discovery documents, URL routing and the per-kind rules (namespaced or not,
which subresources exist, whether writes to the main resource may touch ``.status``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: ``/api/v1/namespaces/{ns}/pods`` is (``""``, ``v1``, ``pods``)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # Pods and nodes keep .status apart: writes to the main resource leave it untouched.
    status_isolated: bool = False
    categories: tuple[str, ...] = ()
    singular: str = field(default="")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return (self.group, self.version)


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), ("status",)),
    ResourceType(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        ("po",),
        ("status", "binding", "log"),
        status_isolated=True,
        categories=("all",),
    ),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), ("status",), status_isolated=True),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "secrets", "Secret", True),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",), ("token",)),
    ResourceType("", "v1", "services", "Service", True, ("svc",), ("status",), categories=("all",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("batch", "v1", "jobs", "Job", True, (), ("status",), categories=("all",)),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
    # Stored only: kubectl looks CRDs up while validating, and an empty list is the answer.
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        ("crd", "crds"),
        ("status",),
    ),
)

# Kinds whose spec changes bump metadata.generation (everything with a spec does on a real
# server; kinds without a spec keep generation unset).
SPEC_KINDS = frozenset({"Pod", "Node", "Service", "Job", "Namespace"})

# Core v1 and events.k8s.io/v1 Events are the same objects in etcd; the emulator stores them
# once under the core type and converts on the way out.
CORE_EVENTS = RESOURCES[3]


def find(group: str, version: str, plural: str) -> ResourceType | None:
    """The resource type served at that group/version/plural, or None."""
    for rt in RESOURCES:
        if (rt.group, rt.version, rt.plural) == (group, version, plural):
            return rt
    return None


def group_versions() -> list[tuple[str, str]]:
    """The non-core group/versions served, in a stable order."""
    seen: list[tuple[str, str]] = []
    for rt in RESOURCES:
        if rt.group and rt.group_version not in seen:
            seen.append(rt.group_version)
    return seen
