"""The pod controller: the loops that feed :class:`~orca.observed.Observed` and the workers.

- The pod watch lists the pods bound to this node (a field selector: the API
  server filters), then watches from the list's resourceVersion. When the
  server has expired that version (410 Gone) or restarted, it lists again; a
  relist also queues every pod that vanished while nobody watched.
- The instance resync makes one paginated DescribeInstances per cycle for all
  of the department's instances (never one call per pod), queues pods whose
  instances changed, revisits running pods (deadlines), and runs the garbage
  collector.
- The report poller long-polls the department's SQS queue for agent reports.
- Workers take pod UIDs from the work queue and reconcile them; a failure is
  retried with backoff, and a UID is never reconciled by two workers at once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from urllib3.exceptions import HTTPError

from orca import tags
from orca.aws.ec2 import Ec2
from orca.aws.queue import StatusQueue
from orca.garbage_collection import GarbageCollector
from orca.kube.pods import PodApi, WatchExpired
from orca.logging_setup import FailingLoop
from orca.observed import Observed
from orca.reconciler import TERMINAL_PHASES, Reconciler
from orca.settings import Settings
from orca.workqueue import WorkQueue

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300
# After a failed receive from the status queue, the next one waits this long.
REPORTS_RETRY_SECONDS = 5.0


class PodController:
    def __init__(
        self,
        settings: Settings,
        observed: Observed,
        queue: WorkQueue,
        reconciler: Reconciler,
        pods: PodApi,
        ec2: Ec2,
        reports: StatusQueue,
        collector: GarbageCollector,
    ) -> None:
        self.settings = settings
        self.observed = observed
        self.queue = queue
        self.reconciler = reconciler
        self.pods = pods
        self.ec2 = ec2
        self.reports = reports
        self.collector = collector
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        loops: list[tuple[str, Callable[[], None]]] = [
            ("pod-watch", self._watch_pods),
            ("instance-resync", self._resync_instances),
            ("agent-reports", self._poll_reports),
        ]
        loops += [(f"worker-{n}", self._work) for n in range(self.settings.workers)]
        for name, target in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.queue.shutdown()
        for thread in self._threads:
            # The watch may sit in a read until the next event or bookmark; it is a
            # daemon thread and holds no state worth waiting for.
            thread.join(timeout=1.0 if thread.name == "pod-watch" else timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def alive(self) -> bool:
        """Whether every loop and worker is still running."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    # Pods.

    def relist(self) -> str:
        pods, version = self.pods.list()
        changed = self.observed.replace_pods(pods)
        self.observed.pods_synced.set()
        for uid in changed:
            self.queue.add(uid)
        log.debug(
            "listed %d pods on %s at resourceVersion %s", len(pods), self.pods.node_name, version
        )
        return version

    def _watch_pods(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self.relist()
                failures = 0
                while not self._stop.is_set():
                    timeout = random.randint(WATCH_TIMEOUT_SECONDS // 2, WATCH_TIMEOUT_SECONDS)
                    for kind, pod in self.pods.watch(version, timeout):
                        version = pod["metadata"].get("resourceVersion") or version
                        if self._stop.is_set():
                            return
                        if kind == "BOOKMARK":
                            continue
                        uid = pod["metadata"]["uid"]
                        if kind == "DELETED":
                            self.observed.forget_pod(uid)
                        else:
                            self.observed.remember_pod(pod)
                        self.queue.add(uid)
            except WatchExpired:
                log.info("pod watch expired (410 Gone); listing again")
            except Exception as e:  # the API server restarted or the network blinked
                failures += 1
                delay = min(30.0, 0.5 * 2**failures)
                if isinstance(e, HTTPError | ConnectionError | OSError):
                    log.warning("pod watch failed (%s); listing again in %.1f s", e, delay)
                else:
                    log.exception("pod watch failed; listing again in %.1f s", delay)
                self._stop.wait(delay)

    # Instances.

    def resync_instances(self) -> None:
        owned = tags.ownership_filter(
            cluster=self.settings.cluster_name, department=self.settings.department
        )
        instances = self.ec2.list_instances(owned)
        self.reconciler.metrics.observe_instances(instances)
        for uid in self.observed.replace_instances(instances):
            self.queue.add(uid)
        # Running pods are revisited each cycle, for deadlines; it costs no API call.
        for uid in self.observed.pod_uids():
            pod = self.observed.pod(uid)
            if pod and (pod.get("status") or {}).get("phase") not in TERMINAL_PHASES:
                self.queue.add(uid)
        if self.observed.pods_synced.is_set():
            self.collector.sweep(instances, self.observed.pod_uids())

    def _resync_instances(self) -> None:
        interval = self.settings.instance_resync_seconds
        outage = FailingLoop(log, "instance resync")
        while not self._stop.is_set():
            try:
                self.resync_instances()
            except Exception as e:
                outage.failed(e, interval)
            else:
                outage.succeeded()
            self._stop.wait(interval)

    # Agent reports.

    def _poll_reports(self) -> None:
        outage = FailingLoop(log, "reading agent reports")
        while not self._stop.is_set():
            try:
                received = self.reports.receive(wait_seconds=self.settings.report_poll_seconds)
            except Exception as e:
                outage.failed(e, REPORTS_RETRY_SECONDS)
                self._stop.wait(REPORTS_RETRY_SECONDS)
                continue
            outage.succeeded()
            for item in received:
                report = item.report
                if self.observed.pod(report.pod_uid) is None and self.observed.pods_synced.is_set():
                    # Its pod is gone: nothing will apply it.
                    self.reports.delete([item.receipt_handle])
                    continue
                self.observed.offer_report(report, item.receipt_handle)
                self.queue.add(report.pod_uid)

    # Workers.

    def _work(self) -> None:
        while True:
            uid = self.queue.get()
            if uid is None:
                return
            try:
                with self.reconciler.metrics.reconcile_seconds.time():
                    self.reconciler.reconcile(uid)
                self.queue.forget(uid)
            except Exception as e:
                self.reconciler.metrics.reconcile_errors.inc()
                delay = self.queue.retry(uid)
                attempt = self.queue.failures(uid)
                log.warning(
                    "reconciling pod %s failed (attempt %d): %s; retrying in %.1f s",
                    uid,
                    attempt,
                    e,
                    delay,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
            finally:
                self.queue.done(uid)
