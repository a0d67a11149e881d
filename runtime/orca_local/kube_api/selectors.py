"""Label and field selectors, parsed from query strings as the API server reads them.

Label selectors support ``=``, ``==``, ``!=``, ``in``, ``notin``, ``key`` and ``!key``. Field
selectors support ``=``, ``==`` and ``!=`` over the fields each kind allows; any other field is
a 400, with the message the real server gives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import ApiError, bad_request

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]

# Fields a real server accepts per kind, beyond metadata.name and metadata.namespace.
_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "Node": ("spec.unschedulable",),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
}

_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\((.*)\)\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def label_selector(text: str | None) -> Predicate:
    """A predicate over an object's labels; an empty selector matches everything."""
    if not text:
        return lambda obj: True
    tests: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_top(text):
        tests.append(_label_term(term))

    def match(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(t(labels) for t in tests)

    return match


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    m = _SET_RE.match(term)
    if m:
        key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in term:
            key, value = (s.strip() for s in term.split(op, 1))
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = term[1:].strip()
        return lambda labels: key not in labels
    if re.fullmatch(r"[A-Za-z0-9._/-]+", term):
        return lambda labels: term in labels
    raise ApiError(
        400, "BadRequest", f"unable to parse requirement: found '{term}', expected: valid selector"
    )


def field_value(obj: Obj, path: str) -> str:
    """A field's value as the field selector compares it (strings; absent is empty)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if path == "source" and isinstance(cur, dict):
        return str(cur.get("component", ""))
    return str(cur)


def field_selector(text: str | None, kind: str) -> Predicate:
    """A predicate for ``fieldSelector``; unsupported fields raise 400 BadRequest."""
    if not text:
        return lambda obj: True
    allowed = ("metadata.name", "metadata.namespace", *_FIELDS.get(kind, ()))
    tests: list[Predicate] = []
    for term in _split_top(text):
        for op in ("!=", "==", "="):
            if op in term:
                path, value = (s.strip() for s in term.split(op, 1))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        if path not in allowed:
            # The real server's message, e.g. for fieldSelector=spec.foo=bar on pods.
            raise bad_request(f"field label not supported: {path}")
        tests.append(_field_test(path, op, value))
    return lambda obj: all(t(obj) for t in tests)


def _field_test(path: str, op: str, value: str) -> Predicate:
    if op == "!=":
        return lambda obj: field_value(obj, path) != value
    return lambda obj: field_value(obj, path) == value
