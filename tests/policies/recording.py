"""Record the example stacks as the engine sees them: resources and their dependencies.

:func:`tests.infra.harness.run_stack` records what each resource registers; the engine also
learns, from the same registration, which resources each input property depends on (the
``propertyDependencies`` of ``RegisterResource``), and passes them on to ``AnalyzeStack``.
The mock monitor drops them, so :func:`record_stack` watches its ``RegisterResource`` for
the length of one run and keeps them, by resource type and name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pulumi.runtime import mocks

from tests.infra.harness import RecordedResource, StackRun, run_stack

Key = tuple[str, str]


@dataclass(frozen=True)
class RecordedStack:
    """A recorded run and, per resource, the resources each input property depends on."""

    run: StackRun
    property_dependencies: dict[Key, dict[str, list[Key]]] = field(default_factory=dict)

    @property
    def resources(self) -> list[RecordedResource]:
        return self.run.resources


@contextmanager
def _watching_registrations() -> Iterator[list[tuple[Key, str, dict[str, list[str]]]]]:
    seen: list[tuple[Key, str, dict[str, list[str]]]] = []
    original = mocks.MockMonitor.RegisterResource

    def register(self: Any, request: Any) -> Any:
        response = original(self, request)
        deps = {k: list(v.urns) for k, v in request.propertyDependencies.items()}
        seen.append(((request.type, request.name), response.urn, deps))
        return response

    mocks.MockMonitor.RegisterResource = register  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        mocks.MockMonitor.RegisterResource = original  # type: ignore[method-assign]


def record_stack(stack_config: dict[str, Any], *, stack: str) -> RecordedStack:
    """Run the program for ``stack_config`` and keep each resource's property dependencies."""
    with _watching_registrations() as seen:
        run = run_stack(stack_config, stack=stack)
    by_urn = {urn: key for key, urn, _ in seen}
    return RecordedStack(
        run,
        {
            key: {prop: [by_urn[u] for u in urns if u in by_urn] for prop, urns in deps.items()}
            for key, _, deps in seen
            if deps
        },
    )
