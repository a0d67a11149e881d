"""Terminating instances whose pod is gone.

The reconciler ends every instance whose pod it sees finish or go; this
collector catches what slipped past it (a pod force-deleted while the runtime
was down, a crash between a launch and its record). An instance is collected
only if it is older than a minimum age (a launch in flight is not yet on its
pod), its pod is missing on two passes, and on the second pass a direct read of
the pod from the API server (not the watch cache) confirms it is gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from orca import tags
from orca.aws.ec2 import Ec2
from orca.aws.model import Instance
from orca.kube.pods import PodApi

log = logging.getLogger(__name__)


class GarbageCollector:
    def __init__(
        self,
        ec2: Ec2,
        pods: PodApi,
        min_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ec2 = ec2
        self.pods = pods
        self.min_age_seconds = min_age_seconds
        self.clock = clock
        self._suspects: set[str] = set()

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
        return collected

    def _pod_exists(self, instance: Instance) -> bool:
        namespace, _, name = instance.tags.get(tags.POD, "/").partition("/")
        if not namespace or not name:
            return False
        pod = self.pods.get(namespace, name)
        return pod is not None and pod["metadata"]["uid"] == instance.tags.get(tags.POD_UID)
