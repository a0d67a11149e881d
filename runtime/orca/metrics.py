"""Prometheus metrics of one runtime, in a registry of its own.

Each runtime holds its own :class:`~prometheus_client.CollectorRegistry`, so
several runtimes in one process (the tests) never collide on metric names.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orca.aws.model import Instance


class Metrics:
    def __init__(self, department: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"department": department}
        self.launches = Counter(
            "orca_launches",
            "Instances launched, by type and market",
            ["instance_type", "market"],
            registry=self.registry,
        ).labels
        self.launch_failures = Counter(
            "orca_launch_failures",
            "RunInstances refusals, by kind (capacity, quota, request)",
            ["kind"],
            registry=self.registry,
        ).labels
        self.rejections = Counter(
            "orca_pods_rejected", "Pods refused for their annotations", registry=self.registry
        )
        self.reconcile_seconds = Histogram(
            "orca_reconcile_seconds", "Time to reconcile one pod", registry=self.registry
        )
        self.reconcile_errors = Counter(
            "orca_reconcile_errors",
            "Reconciles that failed and were retried",
            registry=self.registry,
        )
        self._instances = Gauge(
            "orca_instances",
            "The department's instances by state",
            ["state"],
            registry=self.registry,
        )
        self.node_ready = Gauge(
            "orca_node_ready",
            "1 when the node is Ready (AWS reachable with valid credentials)",
            list(labels),
            registry=self.registry,
        ).labels(**labels)

        self.heartbeat_written = Gauge(
            "orca_heartbeat_written_timestamp_seconds",
            "When the runtime last wrote its heartbeat, which keeps agents' dead-man switches "
            "from stopping their pods (Unix time)",
            registry=self.registry,
        )
        self.heartbeat_failures = Counter(
            "orca_heartbeat_failures",
            "Heartbeat writes that failed (agents stop their pods after a lease without one)",
            registry=self.registry,
        )

    def observe_instances(self, instances: Iterable[Instance]) -> None:
        counts = Tally(instance.state for instance in instances)
        for state in ("pending", "running", "shutting-down", "stopping", "stopped"):
            self._instances.labels(state=state).set(counts.get(state, 0))
