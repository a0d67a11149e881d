"""Kubernetes Events on pods: what a researcher reads in ``kubectl describe pod``.

Repeats of the same reason and message on the same pod are folded into one
Event with a growing ``count``, as the kubelet's recorder does, so a pod that
waits for capacity for an hour does not collect hundreds of Events.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
_MESSAGE_LIMIT = 1024  # the API server truncates longer event messages


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, api_client: client.ApiClient, component: str, host: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.component = component
        self.host = host
        self._seen: dict[tuple[str, str, str], tuple[str, int]] = {}
        self._lock = threading.Lock()

    def normal(self, pod: dict[str, Any], reason: str, message: str) -> None:
        self.record(pod, "Normal", reason, message)

    def warning(self, pod: dict[str, Any], reason: str, message: str) -> None:
        self.record(pod, "Warning", reason, message)

    def record(self, pod: dict[str, Any], kind: EventType, reason: str, message: str) -> None:
        meta = pod["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        message = message[:_MESSAGE_LIMIT]
        level = logging.WARNING if kind == "Warning" else logging.INFO
        log.log(level, "%s/%s %s: %s", namespace, name, reason, message)

        key = (uid, reason, message)
        with self._lock:
            earlier = self._seen.get(key)
        try:
            if earlier is not None:
                event_name, count = earlier
                self.core.patch_namespaced_event(
                    event_name,
                    namespace,
                    {"count": count + 1, "lastTimestamp": _now()},
                    _preload_content=False,
                )
                with self._lock:
                    self._seen[key] = (event_name, count + 1)
                return
            # As the kubelet does: the name ends in the creation time in hex nanoseconds, so
            # events listed by name (as the API lists them) come in the order they happened,
            # and kubectl keeps that order among events of the same second.
            event_name = f"{name}.{time.time_ns():x}"
            self.core.create_namespaced_event(
                namespace, self._event(event_name, meta, kind, reason, message)
            )
            with self._lock:
                self._seen[key] = (event_name, 1)
        except ApiException as e:
            # Events are best effort, as in the kubelet: a lost Event must not stop a launch.
            log.warning("could not record event %s on %s/%s: %s", reason, namespace, name, e)

    def forget(self, pod_uid: str) -> None:
        """Drop the folding state of a pod that is gone."""
        with self._lock:
            for key in [k for k in self._seen if k[0] == pod_uid]:
                del self._seen[key]

    def _event(
        self, event_name: str, meta: dict[str, Any], kind: str, reason: str, message: str
    ) -> dict[str, Any]:
        now = _now()
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event_name, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message,
            "source": {"component": self.component, "host": self.host},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
