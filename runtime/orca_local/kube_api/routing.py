"""URL parsing: which resource, namespace, name and subresource a request path names."""

from __future__ import annotations

from dataclasses import dataclass

from . import resources
from .errors import ApiError
from .resources import ResourceType


@dataclass(frozen=True)
class Route:
    """A resource request: ``/api/v1/namespaces/ns/pods/name/status`` and its parts."""

    rt: ResourceType
    namespace: str | None  # None: all namespaces (or a cluster-scoped kind)
    name: str | None
    subresource: str | None
    watch: bool  # the legacy /watch/ path prefix


def parse(path: str) -> Route | None:
    """The route for a resource path, None for a path that is not one (discovery and such)."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None

    watch = rest[0] == "watch"
    if watch:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        inner = resources.find(group, version, rest[2])
        if inner is not None and inner.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    rt = resources.find(group, version, rest[0])
    if rt is None:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if len(rest) > 3 or (sub is not None and sub not in rt.subresources):
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return Route(rt, namespace, name, sub, watch)
