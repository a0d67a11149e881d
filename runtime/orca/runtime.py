"""Assembling the node runtime from its settings, and running it until told to stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from orca import tags
from orca.admission import Admission, BudgetWatch
from orca.aws.bundles import BundleStore
from orca.aws.clients import AwsClients
from orca.aws.ec2 import Ec2
from orca.aws.heartbeats import HeartbeatStore
from orca.aws.logs import ContainerLogs
from orca.aws.pricing_api import price_list_client
from orca.aws.queue import StatusQueue
from orca.catalog import CachedCatalog
from orca.controller import PodController
from orca.garbage_collection import GarbageCollector
from orca.health import HealthServer
from orca.heartbeat_writer import HeartbeatWriter
from orca.kube.client import api_client
from orca.kube.events import EventRecorder
from orca.kube.nodes import NodeApi
from orca.kube.pods import PodApi
from orca.kubelet_api import KubeletApi, build_kubelet_api
from orca.launching import Launcher
from orca.ledger import Ledger
from orca.metrics import Metrics
from orca.node import NodeKeeper
from orca.observed import Observed
from orca.pricing import Prices
from orca.reconciler import Reconciler
from orca.settings import Settings
from orca.workqueue import WorkQueue

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    node: NodeKeeper
    controller: PodController
    kubelet: KubeletApi | None = None
    catalog: CachedCatalog | None = None
    health: HealthServer | None = None
    heartbeat: HeartbeatWriter | None = None
    budget_watch: BudgetWatch | None = None
    # Connection pools the runtime opened, closed last when it stops.
    closers: list[Callable[[], None]] = field(default_factory=list)

    def warm_catalog(self) -> None:
        if self.catalog is not None:
            self.catalog.get()

    def start(self) -> None:
        # Reading the region's instance types takes a few paged calls; do it before
        # the first pod needs it rather than while that pod waits.
        threading.Thread(target=self.warm_catalog, name="catalog-warmup", daemon=True).start()
        # The kubelet API listens before the node is registered, so the node advertises the
        # port it really has (a free one when kubelet_port is 0).
        if self.kubelet is not None:
            self.kubelet.start()
            if self.kubelet.port != self.settings.kubelet_port:
                self.node.settings = self.settings.model_copy(
                    update={"kubelet_port": self.kubelet.port}
                )
        try:
            self.node.register()
        except Exception:
            if self.kubelet is not None:
                self.kubelet.stop()
            raise
        self.node.start()
        self.controller.start()
        if self.heartbeat is not None:
            self.heartbeat.start()
        if self.budget_watch is not None:
            self.budget_watch.start()
        if self.health is not None:
            self.health.start()
        log.info(
            "ORCA node %s is up: department %s, cluster %s, region %s, %d subnet(s)",
            self.settings.node_name,
            self.settings.department,
            self.settings.cluster_name,
            self.settings.region,
            len(self.settings.subnet_ids),
        )

    def stop(self) -> None:
        log.info(
            "ORCA node %s is stopping; instances keep running and are adopted on restart",
            self.settings.node_name,
        )
        if self.health is not None:
            self.health.stop()
        # The last heartbeat stays: agents keep their pods for a lease, for the next runtime.
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.budget_watch is not None:
            self.budget_watch.stop()
        self.controller.stop()
        self.node.stop()
        if self.kubelet is not None:
            self.kubelet.stop()
        for close in self.closers:
            close()

    def run_until(self, stop: threading.Event) -> None:
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()


def build_runtime(settings: Settings, aws: AwsClients | None = None) -> Runtime:
    """Wire the runtime's parts; talks to AWS once to learn the subnets' zones."""
    closers: list[Callable[[], None]] = []
    if aws is None:
        aws = AwsClients(settings.region)
        closers.append(aws.close)
    kube = api_client(settings.kubeconfig)
    closers.append(kube.close)
    ec2 = Ec2(aws.ec2)
    subnets = ec2.describe_subnets(settings.subnet_ids)

    observed = Observed()
    queue = WorkQueue()
    pods = PodApi(kube, settings.node_name)
    events = EventRecorder(kube, component=settings.node_name, host=settings.node_name)
    bundles = BundleStore(aws.s3, settings.bundle_bucket)
    reports = StatusQueue(aws.sqs, settings.status_queue_url)
    catalog = CachedCatalog(aws.ec2)
    metrics = Metrics(settings.department)
    admission = _admission(settings, aws, metrics, catalog)
    reconciler = Reconciler(
        settings=settings,
        observed=observed,
        pods=pods,
        events=events,
        ec2=ec2,
        bundles=bundles,
        reports=reports,
        launcher=Launcher(settings, ec2, subnets),
        catalog=catalog.get,
        queue=queue,
        metrics=metrics,
        admission=admission,
    )
    collector = GarbageCollector(
        ec2,
        pods,
        settings.gc_min_age_seconds,
        holds=reconciler.spend,
        holds_every_seconds=settings.gc_holds_seconds,
        busy=queue.in_progress,
    )
    controller = PodController(settings, observed, queue, reconciler, pods, ec2, reports, collector)
    node = NodeKeeper(settings, NodeApi(kube), check_aws=ec2.check_access, metrics=metrics)
    log.debug(
        "instances are owned by %s",
        tags.ownership_filter(cluster=settings.cluster_name, department=settings.department),
    )
    kubelet = build_kubelet_api(settings, observed, ContainerLogs(aws.logs, settings.log_group))
    heartbeat = HeartbeatWriter(
        HeartbeatStore.of_department(
            aws.s3, settings.bundle_bucket, settings.cluster_name, settings.department
        ),
        cluster=settings.cluster_name,
        department=settings.department,
        lease=settings.runtime_lease,
        on_written=lambda time: metrics.heartbeat_written.set(time.timestamp()),
        on_failed=metrics.heartbeat_failures.inc,
    )
    return Runtime(
        settings=settings,
        node=node,
        controller=controller,
        kubelet=kubelet,
        catalog=catalog,
        heartbeat=heartbeat,
        budget_watch=BudgetWatch(admission) if admission is not None else None,
        closers=closers,
        health=HealthServer(
            metrics.registry,
            # A dead heartbeat loop would let every agent stop its pod: restart instead.
            alive=lambda: controller.alive() and heartbeat.alive(),
            ready=lambda: node.node is not None and observed.pods_synced.is_set(),
            host=settings.listen_address,
            port=settings.health_port,
        ),
    )


def _admission(
    settings: Settings, aws: AwsClients, metrics: Metrics, catalog: CachedCatalog
) -> Admission | None:
    """The budget's admission on the envelope's ledger, or None when no budget is set."""
    budget = settings.budget
    if budget is None:
        log.warning(
            "no budget is set (ORCA_BUDGET__LEDGER_TABLE, ORCA_BUDGET__MONTHLY_USD): launches "
            "are not checked against a budget and nothing is recorded in a cost ledger"
        )
        return None
    # The Price List API answers from us-east-1 whatever the runtime's region; the local
    # AWS serves it at the same endpoint as everything else.
    prices = Prices(price_list_client(endpoint_url=aws.endpoint_url), aws.ec2, settings.region)
    ledger = Ledger.on(
        aws, budget.ledger_table, cluster=settings.cluster_name, department=settings.department
    )
    log.info(
        "budget: %s USD a month for %s, held in ledger table %s; a pod that does not fit "
        "will %s; running pods over the budget %s",
        budget.monthly_usd,
        settings.department,
        budget.ledger_table,
        budget.when_refused,
        "finish"
        if budget.over_limit == "finish"
        else f"stop at {budget.hard_ceiling_percent}% over it",
    )
    return Admission(budget, ledger, prices, metrics, gpus_of=lambda name: _gpus(catalog, name))


def _gpus(catalog: CachedCatalog, instance_type: str) -> int:
    known = catalog.get().get(instance_type)
    return known.gpus if known is not None else 0
