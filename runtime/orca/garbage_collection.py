"""Terminating instances whose pod is gone, and settling budget holds whose pod is gone.

The reconciler ends every instance whose pod it sees finish or go; this
collector catches what slipped past it (a pod force-deleted while the runtime
was down, a crash between a launch and its record). An instance is collected
only if it is older than a minimum age (a launch in flight is not yet on its
pod), its pod is missing on two passes, and on the second pass a direct read of
the pod from the API server (not the watch cache) confirms it is gone.

The same goes for the budget: a pod deleted while no runtime watched leaves its
hold open in the ledger, which would keep that money from other pods until the
month ends. Every ``holds_every_seconds`` the collector reads the open holds
(:class:`OpenHolds`, one Query of the month); one whose pod is missing on two
such passes and confirmed gone is settled from its instance, once the instance
has ended (this collector ends it), or given back if it never had one. A pod a
worker is reconciling at that moment is left for a later pass: it may be in the
middle of a launch whose instance EC2 does not list yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from orca import tags
from orca.aws.ec2 import Ec2
from orca.aws.model import Instance
from orca.kube.pods import PodApi
from orca.ledger_records import PodEntry
from orca.observed import Pod

log = logging.getLogger(__name__)

# The ledger is read for open holds this often, not on every instance pass
# (ORCA_GC_HOLDS_SECONDS).
HOLDS_EVERY_SECONDS = 60.0


class OpenHolds(Protocol):
    """The budget holds of the department (:class:`orca.pod_spend.PodSpend`)."""

    def held_pods(self) -> list[PodEntry]: ...

    def settle(self, uid: str, pod: Pod | None) -> None: ...


class GarbageCollector:
    def __init__(
        self,
        ec2: Ec2,
        pods: PodApi,
        min_age_seconds: float,
        clock: Callable[[], float] = time.time,
        holds: OpenHolds | None = None,
        holds_every_seconds: float = HOLDS_EVERY_SECONDS,
        busy: Callable[[str], bool] = lambda pod_uid: False,
    ) -> None:
        self.ec2 = ec2
        self.pods = pods
        self.min_age_seconds = min_age_seconds
        self.clock = clock
        self.holds = holds
        self.holds_every_seconds = holds_every_seconds
        # Whether a worker is reconciling the pod now (it may be mid-launch, its instance
        # not yet listed): its hold is left for a later pass.
        self.busy = busy
        self._suspects: set[str] = set()
        self._hold_suspects: set[str] = set()
        self._holds_read_at: float | None = None

    def sweep(self, instances: Iterable[Instance], known_pod_uids: set[str]) -> list[str]:
        """One pass; returns the ids of the instances it terminated."""
        now = self.clock()
        seen: set[str] = set()
        collected: list[str] = []
        for instance in instances:
            if not instance.live or instance.tags.get(tags.POD_UID) in known_pod_uids:
                continue
            if now - instance.launch_time.timestamp() < self.min_age_seconds:
                continue
            seen.add(instance.instance_id)
            if instance.instance_id not in self._suspects:
                log.debug("%s has no pod on this pass; confirming next pass", instance.instance_id)
                continue
            if self._pod_exists(instance):
                continue
            log.warning(
                "terminating orphan %s (%s): its pod %s is gone",
                instance.instance_id,
                instance.instance_type,
                instance.tags.get(tags.POD, "?"),
            )
            collected.append(instance.instance_id)
        if collected:
            self.ec2.terminate(collected)
        self._suspects = seen - set(collected)
        self._sweep_holds(known_pod_uids, now)
        return collected

    def _sweep_holds(self, known_pod_uids: set[str], now: float) -> None:
        if self.holds is None:
            return
        if self._holds_read_at is not None and now - self._holds_read_at < self.holds_every_seconds:
            return
        self._holds_read_at = now
        seen: set[str] = set()
        for held in self.holds.held_pods():
            uid = held.pod_uid
            if uid in known_pod_uids:
                continue
            seen.add(uid)
            if uid not in self._hold_suspects:
                log.debug("pod %s holds budget but is not known; confirming next pass", uid)
                continue
            pod = self.pods.get(held.namespace, held.name)
            if pod is not None and pod["metadata"]["uid"] == uid:
                continue
            if self.busy(uid):
                log.debug("pod %s is gone but a worker has it in hand; its hold waits", uid)
                continue
            log.warning(
                "pod %s/%s is gone with its budget hold open (%s); settling it",
                held.namespace,
                held.name,
                uid,
            )
            # Settled once its instance has ended, given back if it had none; until then
            # the pod stays a suspect and is tried again, as it is when settling fails.
            try:
                self.holds.settle(uid, None)
            except Exception:  # the ledger or EC2 busy: the other holds still get their turn
                log.exception(
                    "settling the hold of %s/%s failed; trying again", held.namespace, held.name
                )
        self._hold_suspects = seen

    def _pod_exists(self, instance: Instance) -> bool:
        namespace, _, name = instance.tags.get(tags.POD, "/").partition("/")
        if not namespace or not name:
            return False
        pod = self.pods.get(namespace, name)
        return pod is not None and pod["metadata"]["uid"] == instance.tags.get(tags.POD_UID)
