"""Values unknown at preview, as the engine sends them: a leaf, an object or a whole list.

During ``pulumi preview`` the engine sends the sentinel :data:`UNKNOWN_STRING` for any value
it does not know yet, whatever its shape: a string, a number, a whole object (a resource's
``tags`` computed from another's outputs) or a whole list. :func:`unknown_at` makes one
such value unknown; :func:`unknown_paths` lists every value worth making unknown in turn:
each top-level property and each object or list nested anywhere in one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.infra.harness import SECRET_SIGNATURE

# What the engine sends for a value it does not know yet (a string sentinel).
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
Path = tuple[str | int, ...]


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SECRET_SIGNATURE in value


def all_unknown(value: Any) -> Any:
    """``value`` with every leaf unknown (secrets stay marked secret)."""
    if _is_secret(value):
        return {SECRET_SIGNATURE: value[SECRET_SIGNATURE], "value": UNKNOWN_STRING}
    if isinstance(value, dict):
        return {k: all_unknown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [all_unknown(v) for v in value]
    return UNKNOWN_STRING


def unknown_at(value: Any, path: Path) -> Any:
    """A copy of ``value`` whose value at ``path`` (keys and list indexes) is unknown."""
    if _is_secret(value):
        return {**value, "value": unknown_at(value["value"], path)}
    if not path:
        return UNKNOWN_STRING
    step, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: unknown_at(v, rest) if k == step else v for k, v in value.items()}
    if isinstance(value, list):
        return [unknown_at(v, rest) if i == step else v for i, v in enumerate(value)]
    raise KeyError(f"{path} does not lead anywhere in {value!r}")


def unknown_paths(props: dict[str, Any]) -> Iterator[Path]:
    """Each top-level property, and every object or list nested in one."""

    def nested(value: Any, path: Path) -> Iterator[Path]:
        if _is_secret(value):
            value = value["value"]
        children = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        for key, child in children:
            inner = child["value"] if _is_secret(child) else child
            if isinstance(inner, dict | list):
                yield (*path, key)
                yield from nested(child, (*path, key))

    for key, value in props.items():
        yield (key,)
        yield from nested(value, (key,))
