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

        # Money, in USD. Spend is this month's: settled pods plus what running pods have
        # accrued; remaining is what new holds may still take (the budget less spend and
        # holds), as the ledger counts it.
        self.spent_usd = Gauge(
            "orca_budget_spent_usd",
            "This month's spend of the department: settled pods plus running pods so far",
            list(labels),
            registry=self.registry,
        ).labels(**labels)
        self.namespace_spent_usd = Gauge(
            "orca_budget_namespace_spent_usd",
            "This month's spend per namespace: settled pods plus running pods so far",
            ["department", "namespace"],
            registry=self.registry,
        )
        self.budget_usd = Gauge(
            "orca_budget_limit_usd",
            "The department's monthly budget",
            list(labels),
            registry=self.registry,
        ).labels(**labels)
        self.remaining_usd = Gauge(
            "orca_budget_remaining_usd",
            "What is left of this month's budget for new launches (budget - spent - held - "
            "what pods admitted in earlier months may still spend in this one)",
            list(labels),
            registry=self.registry,
        ).labels(**labels)
        self.burn_usd_per_hour = Gauge(
            "orca_budget_burn_usd_per_hour",
            "The hourly burn: the sum of the running pods' hourly prices",
            list(labels),
            registry=self.registry,
        ).labels(**labels)
        self.pod_price = Gauge(
            "orca_pod_price_usd_per_hour",
            "The hourly price of each running pod's instance",
            ["namespace", "pod", "instance_type", "market"],
            registry=self.registry,
        )
        self.budget_refusals = Counter(
            "orca_launches_refused_by_budget",
            "Launches refused because the pod's bound cost did not fit, by limit "
            "(department, namespace) or because no price was known (price)",
            ["scope"],
            registry=self.registry,
        ).labels
        self.department = department

    def observe_instances(self, instances: Iterable[Instance]) -> None:
        counts = Tally(instance.state for instance in instances)
        for state in ("pending", "running", "shutting-down", "stopping", "stopped"):
            self._instances.labels(state=state).set(counts.get(state, 0))
