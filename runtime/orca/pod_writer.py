"""Writing to a pod: its annotations, its status, and the Warning that explains a status.

Every part of the reconciler writes to pods through one :class:`PodWriter`, so that
each write is remembered in :class:`orca.observed.Observed` at once (the watch brings
the same object later; until then the next reconcile must not act on the old one),
and a status that says nothing new is not sent at all (reconciling again with nothing
new changes nothing, not even the pod's resourceVersion).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from orca import status as pod_status
from orca.kube.events import EventRecorder
from orca.kube.pods import PodApi
from orca.observed import Observed, Pod

# The keys of a status that, when all unchanged, make a status patch a no-op.
_STATUS_KEYS = (
    "phase",
    "reason",
    "message",
    "conditions",
    "containerStatuses",
    "initContainerStatuses",
    "podIP",
    "hostIP",
)


class PodWriter:
    def __init__(
        self,
        pods: PodApi,
        observed: Observed,
        events: EventRecorder,
        clock: Callable[[], datetime],
    ) -> None:
        self.pods = pods
        self.observed = observed
        self.events = events
        self.clock = clock

    def annotate(self, pod: Pod, annotations: dict[str, str | None]) -> Pod:
        """Set (or, for None, remove) annotations; returns the pod as the API now holds it."""
        updated = self.pods.annotate(pod, annotations)
        self.observed.remember_pod(updated)
        return updated

    def set_status(self, pod: Pod, new: dict[str, Any]) -> None:
        """Patch the pod's status unless nothing in it changes; ``pod`` gets the result."""
        current = pod.get("status") or {}
        if all(current.get(key) == new.get(key) for key in _STATUS_KEYS if key in new):
            return
        updated = self.pods.patch_status(pod, new)
        self.observed.remember_pod(updated)
        pod["status"] = updated.get("status", new)

    def fail(self, pod: Pod, reason: str, message: str) -> None:
        """A Warning Event, and the pod Failed for the same reason."""
        self.events.warning(pod, reason, message)
        self.set_status(pod, pod_status.failed_status(pod, reason, message, self.clock()))

    def wait(self, pod: Pod, reason: str, message: str) -> None:
        """A Warning Event, and the pod left Pending, waiting for the same reason."""
        self.events.warning(pod, reason, message)
        self.set_status(pod, pod_status.pending_status(pod, reason, message, self.clock()))
