"""The scheduler's stand-in: binds pending pods to nodes, as kube-scheduler would.

No real cluster runs here, so nothing else assigns pods to the ORCA virtual node. The binder
is an ordinary API client (the official ``kubernetes`` client, like kube-scheduler's
client-go): it watches unbound pods for ``default-scheduler`` and all nodes, and binds each
pod through ``pods/binding`` to the first node that passes the filters kube-scheduler applies
first, in the same order: not unschedulable, taints tolerated (a NotReady node counts as
tainted ``node.kubernetes.io/not-ready``), ``nodeSelector`` and required node affinity
matched, room by the allocatable pod count. A pod that fits nowhere gets a Warning Event
``FailedScheduling`` worded as the real scheduler words it, plus the ``PodScheduled=False``
condition, and is retried when pods or nodes change.

Run ``python -m orca_local.binder --kubeconfig PATH`` or, in-process, ``Binder(api_client)``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import secrets
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"
TERMINAL_PHASES = ("Succeeded", "Failed")
_SCHEDULE_EFFECTS = ("NoSchedule", "NoExecute")
# The reasons kube-scheduler's filter plugins give, keyed for counting.
UNSCHEDULABLE = "node(s) were unschedulable"
AFFINITY = "node(s) didn't match Pod's node affinity/selector"
TOO_MANY_PODS = "Too many pods"


def tolerates(tolerations: list[Any], taint: Any) -> bool:
    """Whether any toleration tolerates the taint (Kubernetes' Equal/Exists semantics)."""
    for t in tolerations or []:
        if t.effect and t.effect != taint.effect:
            continue
        if not t.key:
            if t.operator == "Exists":
                return True
            continue
        if t.key != taint.key:
            continue
        if t.operator == "Exists" or (t.value or "") == (taint.value or ""):
            return True
    return False


def _expression_matches(expr: Any, labels: dict[str, str]) -> bool:
    value = labels.get(expr.key)
    op, values = expr.operator, expr.values or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    return False


def matches_affinity(pod: Any, node: Any) -> bool:
    """``nodeSelector`` and required node affinity (terms ORed, expressions ANDed)."""
    labels = node.metadata.labels or {}
    for key, value in (pod.spec.node_selector or {}).items():
        if labels.get(key) != value:
            return False
    affinity = pod.spec.affinity.node_affinity if pod.spec.affinity else None
    required = affinity.required_during_scheduling_ignored_during_execution if affinity else None
    if required is None or not required.node_selector_terms:
        return True
    fields = {"metadata.name": node.metadata.name}
    for term in required.node_selector_terms:
        exprs = term.match_expressions or []
        field_exprs = term.match_fields or []
        if not exprs and not field_exprs:
            continue
        if all(_expression_matches(e, labels) for e in exprs) and all(
            _expression_matches(e, fields) for e in field_exprs
        ):
            return True
    return False


def _taints(node: Any) -> list[Any]:
    taints = list(node.spec.taints or []) if node.spec else []
    ready = (
        next(
            (c for c in (node.status.conditions or []) if c.type == "Ready"),
            None,
        )
        if node.status
        else None
    )
    if ready is None or ready.status != "True":
        key = "node.kubernetes.io/not-ready" if ready else "node.kubernetes.io/unreachable"
        taints.append(client.V1Taint(key=key, effect="NoSchedule"))
    return taints


def why_not(pod: Any, node: Any, pods_on_node: int) -> str | None:
    """The first filter the node fails for the pod, as kube-scheduler orders them, or None."""
    if node.spec and node.spec.unschedulable:
        return UNSCHEDULABLE
    for taint in _taints(node):
        if taint.effect in _SCHEDULE_EFFECTS and not tolerates(pod.spec.tolerations, taint):
            return f"node(s) had untolerated taint {{{taint.key}: {taint.value or ''}}}"
    if not matches_affinity(pod, node):
        return AFFINITY
    allocatable = (node.status.allocatable or {}) if node.status else {}
    if pods_on_node >= int(allocatable.get("pods", "110")):
        return TOO_MANY_PODS
    return None


def failure_message(reasons: list[str], total: int) -> str:
    """``0/3 nodes are available: 1 node(s) ..., 2 node(s) ....`` as kube-scheduler says it."""
    if total == 0:
        return "no nodes available to schedule pods"
    counts = Counter(reasons)
    parts = sorted(f"{n} {reason}" for reason, n in counts.items())
    return f"0/{total} nodes are available: {', '.join(parts)}."


class Binder:
    """Binds unbound ``default-scheduler`` pods to fitting nodes until stopped."""

    def __init__(
        self,
        api_client: client.ApiClient,
        scheduler_name: str = SCHEDULER_NAME,
        resync_seconds: float = 5.0,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.scheduler_name = scheduler_name
        self.resync_seconds = resync_seconds
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # The last FailedScheduling message per pod uid, so a pod that keeps failing for the
        # same reason is not flooded with identical Events.
        self._reported: dict[str, str] = {}

    def start(self) -> Binder:
        targets: list[tuple[str, Callable[[], None]]] = [
            ("binder", self._run),
            (
                "binder-watch-pods",
                lambda: self._watch(self.core.list_pod_for_all_namespaces, "spec.nodeName="),
            ),
            ("binder-watch-nodes", lambda: self._watch(self.core.list_node, None)),
        ]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("binder started for scheduler %s", self.scheduler_name)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        for thread in self._threads:
            thread.join(timeout=10)
        log.info("binder stopped")

    def _watch(self, list_fn: Callable[..., Any], field_selector: str | None) -> None:
        # Short watch calls, so stop() is honoured within a couple of seconds.
        while not self._stopping.is_set():
            kwargs: dict[str, Any] = {"timeout_seconds": 2}
            if field_selector is not None:
                kwargs["field_selector"] = field_selector
            try:
                for _ in watch.Watch().stream(list_fn, **kwargs):
                    self._dirty.set()
                    if self._stopping.is_set():
                        return
            except (ApiException, OSError) as e:
                log.warning("binder watch failed: %s; retrying in 1s", e)
                self._stopping.wait(1)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait(self.resync_seconds)
            self._dirty.clear()
            if self._stopping.is_set():
                return
            try:
                self.schedule_once()
            except (ApiException, OSError) as e:
                log.warning("binder pass failed: %s; will retry on the next change", e)

    def schedule_once(self) -> int:
        """One scheduling pass over every pending pod; returns how many were bound."""
        nodes = self.core.list_node().items
        pods = self.core.list_pod_for_all_namespaces().items
        load = Counter(
            p.spec.node_name
            for p in pods
            if p.spec.node_name and (p.status.phase if p.status else None) not in TERMINAL_PHASES
        )
        pending = sorted(
            (
                p
                for p in pods
                if not p.spec.node_name
                and p.spec.scheduler_name == self.scheduler_name
                and p.metadata.deletion_timestamp is None
            ),
            key=lambda p: p.metadata.creation_timestamp,
        )
        bound = 0
        for pod in pending:
            reasons = []
            for node in sorted(nodes, key=lambda n: n.metadata.name):
                reason = why_not(pod, node, load[node.metadata.name])
                if reason is None:
                    if self._bind(pod, node.metadata.name):
                        load[node.metadata.name] += 1
                        bound += 1
                    break
                reasons.append(reason)
            else:
                self._report_unschedulable(pod, failure_message(reasons, len(nodes)))
        return bound

    def _bind(self, pod: Any, node_name: str) -> bool:
        ns, name = pod.metadata.namespace, pod.metadata.name
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=name, uid=pod.metadata.uid),
            target=client.V1ObjectReference(kind="Node", name=node_name, api_version="v1"),
        )
        try:
            # The server answers a Status, which the generated V1Binding model cannot hold.
            self.core.create_namespaced_pod_binding(name, ns, body, _preload_content=False)
        except ApiException as e:
            if e.status in (404, 409):
                log.info("pod %s/%s not bound: %s", ns, name, e.reason)
                return False
            raise
        self._reported.pop(pod.metadata.uid, None)
        log.info("bound pod %s/%s to node %s", ns, name, node_name)
        self._record(
            pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node_name}"
        )
        return True

    def _report_unschedulable(self, pod: Any, message: str) -> None:
        if self._reported.get(pod.metadata.uid) == message:
            return
        self._reported[pod.metadata.uid] = message
        ns, name = pod.metadata.namespace, pod.metadata.name
        log.info("pod %s/%s unschedulable: %s", ns, name, message)
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": _now(),
        }
        try:
            self.core.patch_namespaced_pod_status(name, ns, {"status": {"conditions": [condition]}})
        except ApiException as e:
            if e.status != 404:
                raise
            return
        self._record(pod, "Warning", "FailedScheduling", message)

    def _record(self, pod: Any, type_: str, reason: str, message: str) -> None:
        now = _now()
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{pod.metadata.name}.{secrets.token_hex(8)}",
                namespace=pod.metadata.namespace,
            ),
            involved_object=client.V1ObjectReference(
                api_version="v1",
                kind="Pod",
                name=pod.metadata.name,
                namespace=pod.metadata.namespace,
                uid=pod.metadata.uid,
                resource_version=pod.metadata.resource_version,
            ),
            reason=reason,
            message=message,
            type=type_,
            source=client.V1EventSource(component=self.scheduler_name),
            reporting_component=self.scheduler_name,
            reporting_instance=self.scheduler_name,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        self.core.create_namespaced_event(pod.metadata.namespace, event)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orca_local.binder", description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    api_client = config.new_client_from_config(config_file=args.kubeconfig)
    binder = Binder(api_client).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    binder.stop()
    api_client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
