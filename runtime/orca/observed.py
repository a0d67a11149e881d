"""What the runtime has observed: pods on its node, their instances, agent reports.

Three feeds fill this: the pod watch, one DescribeInstances per resync cycle,
and the agents' reports from SQS. The reconciler reads it and never calls the
APIs to find out what it could know from here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from orca import tags
from orca.aws.model import Instance
from orca.messages import StatusReport

Pod = dict[str, Any]


def _version(pod: Pod) -> int:
    try:
        return int(pod["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class PendingReport:
    report: StatusReport
    receipts: list[str] = field(default_factory=list)


class Observed:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, Pod] = {}
        self._instances: dict[str, list[Instance]] = {}
        self._reports: dict[str, PendingReport] = {}
        # Pods this process saw and then saw go: their instances can be ended at once.
        self._deleted: set[str] = set()
        self.pods_synced = threading.Event()
        self.instances_synced = threading.Event()

    # Pods, keyed by UID.

    def pod(self, uid: str) -> Pod | None:
        with self._lock:
            return self._pods.get(uid)

    def pod_named(self, namespace: str, name: str) -> Pod | None:
        """The pod ``namespace/name`` on this node; the newest if a recreated one overlaps."""
        with self._lock:
            found = [
                p
                for p in self._pods.values()
                if p["metadata"].get("name") == name and p["metadata"].get("namespace") == namespace
            ]
        return max(found, key=_version, default=None)

    def pod_uids(self) -> set[str]:
        with self._lock:
            return set(self._pods)

    def remember_pod(self, pod: Pod) -> None:
        """Keep ``pod`` unless a newer version of it is already known."""
        uid = pod["metadata"]["uid"]
        with self._lock:
            known = self._pods.get(uid)
            if known is None or _version(pod) >= _version(known):
                self._pods[uid] = pod

    def forget_pod(self, uid: str) -> None:
        with self._lock:
            if self._pods.pop(uid, None) is not None:
                self._deleted.add(uid)

    def was_deleted(self, uid: str) -> bool:
        """Whether this process saw the pod and then saw it deleted."""
        with self._lock:
            return uid in self._deleted

    def replace_pods(self, pods: list[Pod]) -> set[str]:
        """Set the pods from a full list; returns every UID that changed or vanished."""
        with self._lock:
            before = set(self._pods)
            self._pods = {p["metadata"]["uid"]: p for p in pods}
            self._deleted |= before - set(self._pods)
            return before | set(self._pods)

    # Instances, keyed by the pod UID in their tags.

    def instances(self, uid: str) -> list[Instance]:
        with self._lock:
            return list(self._instances.get(uid, []))

    def all_instances(self) -> list[Instance]:
        with self._lock:
            return [i for group in self._instances.values() for i in group]

    def remember_instance(self, instance: Instance) -> None:
        uid = instance.tags.get(tags.POD_UID, "")
        with self._lock:
            group = [
                i for i in self._instances.get(uid, []) if i.instance_id != instance.instance_id
            ]
            self._instances[uid] = [*group, instance]

    def replace_instances(self, instances: list[Instance]) -> set[str]:
        """Set the instances from a full listing; returns the UIDs whose instances changed."""
        grouped: dict[str, list[Instance]] = {}
        for instance in instances:
            grouped.setdefault(instance.tags.get(tags.POD_UID, ""), []).append(instance)
        with self._lock:
            changed = {
                uid
                for uid in set(grouped) | set(self._instances)
                if _states(grouped.get(uid, [])) != _states(self._instances.get(uid, []))
            }
            self._instances = grouped
        self.instances_synced.set()
        return changed

    # Agent reports, keyed by pod UID; only the newest snapshot matters.

    def offer_report(self, report: StatusReport, receipt: str) -> bool:
        """Keep ``report`` if it is newer than the one held; True if it was kept."""
        with self._lock:
            held = self._reports.get(report.pod_uid)
            if held is None or report.sequence > held.report.sequence:
                receipts = held.receipts if held else []
                self._reports[report.pod_uid] = PendingReport(report, [*receipts, receipt])
                return True
            held.receipts.append(receipt)
            return False

    def take_report(self, uid: str) -> PendingReport | None:
        with self._lock:
            return self._reports.get(uid)

    def settle_report(self, uid: str, pending: PendingReport) -> None:
        """Drop a report once applied, unless a newer one arrived meanwhile."""
        with self._lock:
            if self._reports.get(uid) is pending:
                del self._reports[uid]


def _states(instances: list[Instance]) -> set[tuple[str, str]]:
    return {(i.instance_id, i.state) for i in instances}
