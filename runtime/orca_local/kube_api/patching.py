"""PATCH bodies: JSON merge patch, JSON patch, strategic merge patch and server-side apply.

Strategic merge covers what kubectl and the kubernetes client produce: maps merge, ``null``
deletes a key, lists with a merge key (containers by name, volumeMounts by mountPath, pod
conditions by type, ...) merge element by element, other lists replace, and the ``$patch``,
``$retainKeys``, ``$deleteFromPrimitiveList/`` and ``$setElementOrder/`` directives work.
Merge keys are looked up by field name, which is unambiguous for the kinds served here.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .errors import ApiError, bad_request

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# Field name -> merge key, for lists the Kubernetes types declare patchStrategy=merge.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "resourceClaims": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "taints": "key",
    "topologySpreadConstraints": "topologyKey",
    "ports": "containerPort",
}
# Lists of scalars that merge as sets (patchStrategy=merge without a key).
_PRIMITIVE_MERGE = frozenset({"finalizers"})


def apply_patch(target: dict[str, Any], body: bytes, content_type: str) -> dict[str, Any]:
    """The object after applying a PATCH body of the given content type."""
    ctype = content_type.split(";")[0].strip()
    try:
        if ctype == APPLY_PATCH:
            import yaml

            patch = yaml.safe_load(body.decode() or "{}")
        else:
            patch = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"error decoding patch: {e}") from e

    if ctype == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json patch must be a list of operations")
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("patch body must be a JSON object")
    if ctype == MERGE_PATCH:
        merged: dict[str, Any] = merge_patch(target, patch)
        return merged
    if ctype in (STRATEGIC_PATCH, APPLY_PATCH):
        return strategic_merge(target, patch)
    raise ApiError(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}"
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, list):
            doc = doc[int(part)]
        elif isinstance(doc, dict):
            doc = doc[part]
        else:
            raise KeyError(part)
    return doc


def json_patch(target: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc: Any = copy.deepcopy(target)
    for op in ops:
        try:
            doc = _json_patch_op(doc, op)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ApiError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {op}: {e}",
            ) from e
    if not isinstance(doc, dict):
        raise bad_request("json patch replaced the whole object with a non-object")
    return doc


def _json_patch_op(doc: Any, op: dict[str, Any]) -> Any:
    kind = op["op"]
    parts = _pointer(op["path"])
    if kind == "test":
        if _walk(doc, parts) != op["value"]:
            raise ValueError("test failed")
        return doc
    if kind in ("move", "copy"):
        src = _pointer(op["from"])
        value = copy.deepcopy(_walk(doc, src))
        if kind == "move":
            doc = _json_patch_op(doc, {"op": "remove", "path": op["from"]})
        return _json_patch_op(doc, {"op": "add", "path": op["path"], "value": value})
    if not parts:
        return copy.deepcopy(op["value"]) if kind != "remove" else None
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if kind == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif kind == "remove":
            parent.pop(index)
        elif kind == "replace":
            parent[index] = copy.deepcopy(op["value"])
        return doc
    if kind == "add":
        parent[last] = copy.deepcopy(op["value"])
    elif kind == "remove":
        del parent[last]
    elif kind == "replace":
        if last not in parent:
            raise KeyError(last)
        parent[last] = copy.deepcopy(op["value"])
    else:
        raise ValueError(f"unknown op {kind!r}")
    return doc


def strategic_merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Strategic merge patch over a map, with the directives kubectl sends."""
    merged = _merge_map(target if isinstance(target, dict) else {}, patch)
    return merged if merged is not None else {}


def _merge_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target)

    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in (value or [])]
            continue
        # $setElementOrder/ and other directives only order or annotate; merging ignores them.
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            sub = _merge_map(current if isinstance(current, dict) else {}, value)
            if sub is None:
                result.pop(key, None)
            else:
                result[key] = sub
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(field: str, target: Any, patch: list[Any]) -> list[Any]:
    current = list(target) if isinstance(target, list) else []
    if field in _PRIMITIVE_MERGE:
        out = list(current)
        out.extend(v for v in patch if v not in out)
        return out
    key = _MERGE_KEYS.get(field)
    if field == "ports" and any(isinstance(p, dict) and "containerPort" not in p for p in patch):
        key = "port"
    if key is None or not all(isinstance(p, dict) for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]

    # A `$patch: replace` element replaces the whole list with the other elements.
    if any(p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if "$patch" not in p]
    out = [copy.deepcopy(c) for c in current]
    for item in patch:
        pos = next(
            (i for i, c in enumerate(out) if isinstance(c, dict) and c.get(key) == item.get(key)),
            None,
        )
        if item.get("$patch") == "delete":
            if pos is not None:
                out.pop(pos)
            continue
        if pos is None:
            merged = _merge_map({}, item)
            if merged is not None:
                out.append(merged)
        else:
            merged = _merge_map(out[pos], item)
            if merged is None:
                out.pop(pos)
            else:
                out[pos] = merged
    return out
