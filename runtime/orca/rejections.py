"""Why a pod cannot burst, in words a researcher can act on.

Both the pod contract (:mod:`orca.contract`, the annotations) and the spec checks
(:mod:`orca.spec_support`, fields the agent cannot honour) describe each problem as a
:class:`Rejection`: the annotation or field, the value given, the problem and what is
allowed. The reconciler turns each into a Warning Event with the rejection's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Rejection:
    """One reason a pod cannot burst; ``annotation`` is an annotation key or a spec field."""

    annotation: str
    value: str | None
    problem: str
    allowed: str
    # The Event's reason (and the pod's, when it is the first problem).
    reason: str = "InvalidAnnotation"

    def message(self) -> str:
        given = "is not set" if self.value is None else f"is {self.value!r}"
        return f"{self.annotation} {given}: {self.problem}. Allowed: {self.allowed}."


class ContractError(Exception):
    def __init__(self, rejections: Sequence[Rejection]) -> None:
        self.rejections = tuple(rejections)
        super().__init__("; ".join(r.message() for r in self.rejections))
