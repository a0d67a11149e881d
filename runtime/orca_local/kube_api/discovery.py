"""Discovery documents: ``/version``, ``/api``, ``/apis`` and the per-group resource lists.

kubectl builds its REST mapping from these (kinds, short names like ``po`` and ``no``,
namespaced or not, verbs, subresources). The emulator answers the legacy (unaggregated)
formats; kubectl falls back to them when the aggregated discovery type is not offered.
"""

from __future__ import annotations

from typing import Any

from .resources import ALL_VERBS, RESOURCES, ResourceType, group_versions

Obj = dict[str, Any]
KUBE_VERSION = ("1", "37", "v1.37.1")

_SUBRESOURCE_VERBS: dict[str, tuple[str, tuple[str, ...]]] = {
    "status": ("", ("get", "patch", "update")),
    "binding": ("Binding", ("create",)),
    "log": ("Pod", ("get",)),
    "token": ("TokenRequest", ("create",)),
}


def version() -> Obj:
    major, minor, git = KUBE_VERSION
    return {
        "major": major,
        "minor": minor,
        "gitVersion": git,
        "gitCommit": "orca-local-emulator",
        "gitTreeState": "clean",
        "buildDate": "2026-12-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def core_versions() -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    }


def _group(name: str, version: str) -> Obj:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def group_list() -> Obj:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, v) for g, v in group_versions()],
    }


def group(name: str) -> Obj | None:
    for g, v in group_versions():
        if g == name:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, v)}
    return None


def resource_list(group_name: str, version_name: str) -> Obj | None:
    """The APIResourceList of one group/version, or None if it is not served."""
    served = [rt for rt in RESOURCES if (rt.group, rt.version) == (group_name, version_name)]
    if not served:
        return None
    resources: list[Obj] = []
    for rt in served:
        resources.append(_entry(rt))
        for sub in rt.subresources:
            kind, verbs = _SUBRESOURCE_VERBS[sub]
            entry: Obj = {
                "name": f"{rt.plural}/{sub}",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": kind or rt.kind,
                "verbs": list(verbs),
            }
            if sub == "token":
                # A subresource of a core resource, served in another group's kind.
                entry.update({"group": "authentication.k8s.io", "version": "v1"})
            resources.append(entry)
    gv = f"{group_name}/{version_name}" if group_name else version_name
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }


def _entry(rt: ResourceType) -> Obj:
    verbs = [v for v in ALL_VERBS if not (rt.kind == "Namespace" and v == "deletecollection")]
    entry: Obj = {
        "name": rt.plural,
        "singularName": rt.kind.lower(),
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": verbs,
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    return entry
