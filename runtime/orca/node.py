"""The department's virtual node: what it advertises and whether it is Ready.

The node is how the scheduler sees the department's slice of AWS: labels and a
taint that only burst pods tolerate, capacity from the department's limits, and
a Ready condition that follows whether AWS answers with valid credentials. Its
Lease in ``kube-node-lease`` is renewed every 10 seconds, as a kubelet's is;
the full status is written when readiness changes and at least once a minute.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from orca import __version__, tags
from orca.aws.errors import AuthError, AwsError
from orca.kube.nodes import NodeApi
from orca.logging_setup import FailingLoop
from orca.metrics import Metrics
from orca.settings import Settings

log = logging.getLogger(__name__)

LEASE_RENEW_SECONDS = 10.0
STATUS_REPORT_SECONDS = 60.0


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_labels(settings: Settings) -> dict[str, str]:
    return {
        "type": "virtual-kubelet",
        "kubernetes.io/role": "agent",
        "kubernetes.io/hostname": settings.node_name,
        "kubernetes.io/os": "linux",
        tags.PROVIDER_LABEL: tags.PROVIDER_VALUE,
        tags.DEPARTMENT_LABEL: settings.department,
        "topology.kubernetes.io/region": settings.region,
        # A burst node serves no Service traffic from outside.
        "node.kubernetes.io/exclude-from-external-load-balancers": "true",
    }


def node_capacity(settings: Settings) -> dict[str, str]:
    limits = settings.limits
    capacity = {
        "pods": str(limits.max_pods),
        "cpu": str(limits.cpu),
        "memory": f"{limits.memory_gib}Gi",
        "nvidia.com/gpu": str(limits.gpus),
        "aws.amazon.com/neuron": str(limits.neuron_devices),
        "ephemeral-storage": "100Ti",
    }
    return capacity


def ready_condition(ready: bool, reason: str, message: str, now: datetime) -> dict[str, str]:
    return {
        "type": "Ready",
        "status": "True" if ready else "False",
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": _timestamp(now),
        "lastTransitionTime": _timestamp(now),
    }


def node_status(settings: Settings, ready: tuple[bool, str, str], now: datetime) -> dict[str, Any]:
    capacity = node_capacity(settings)
    conditions = [ready_condition(*ready, now)]
    for kind, reason in (
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ):
        conditions.append(
            {
                "type": kind,
                "status": "False",
                "reason": reason,
                "message": "each pod runs on its own EC2 instance",
                "lastHeartbeatTime": _timestamp(now),
                "lastTransitionTime": _timestamp(now),
            }
        )
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": settings.node_internal_ip},
            {"type": "Hostname", "address": settings.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": settings.kubelet_port}},
        "nodeInfo": {
            "kubeletVersion": f"v1.31.0-orca-{__version__}",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "containerRuntimeVersion": f"aws-ec2://{settings.region}",
            "osImage": "ORCA burst node (one EC2 instance per pod)",
            "kernelVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }


def node_object(settings: Settings, ready: tuple[bool, str, str], now: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": settings.node_name, "labels": node_labels(settings)},
        "spec": {
            "taints": [
                {
                    "key": tags.BURST_TAINT_KEY,
                    "value": tags.BURST_TAINT_VALUE,
                    "effect": tags.BURST_TAINT_EFFECT,
                }
            ]
        },
        "status": node_status(settings, ready, now),
    }


class NodeKeeper:
    """Registers the node, then keeps its Lease and Ready condition current."""

    def __init__(
        self,
        settings: Settings,
        api: NodeApi,
        check_aws: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.api = api
        self.check_aws = check_aws
        self.clock = clock
        self.metrics = metrics
        self.node: dict[str, Any] | None = None
        self.ready: tuple[bool, str, str] = (False, "Starting", "ORCA is starting")
        self._last_status_at: datetime | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="node-heartbeat", daemon=True)

    def readiness(self) -> tuple[bool, str, str]:
        """Whether ORCA can launch: AWS reachable with valid credentials."""
        ready = self._readiness()
        if self.metrics is not None:
            self.metrics.node_ready.set(1 if ready[0] else 0)
        return ready

    def _readiness(self) -> tuple[bool, str, str]:
        region = self.settings.region
        try:
            self.check_aws()
        except AuthError as e:
            return False, "AwsCredentialsInvalid", f"AWS refused ORCA's credentials: {e}"
        except AwsError as e:
            return False, "AwsUnreachable", f"AWS cannot be reached in {region}: {e}"
        return True, "KubeletReady", f"ORCA is ready to launch EC2 instances in {region}"

    def register(self) -> None:
        self.ready = self.readiness()
        now = self.clock()
        self.node = self.api.register(node_object(self.settings, self.ready, now))
        self._last_status_at = now
        self.api.renew_lease(self.node, self.settings.lease_duration_seconds, now)

    def heartbeat(self) -> None:
        """One beat: renew the Lease; write status if readiness changed or a minute passed."""
        assert self.node is not None, "register() first"
        now = self.clock()
        self.api.renew_lease(self.node, self.settings.lease_duration_seconds, now)

        ready = self.readiness()
        changed = ready[0] != self.ready[0] or ready[1] != self.ready[1]
        due = (
            self._last_status_at is None
            or (now - self._last_status_at).total_seconds() >= STATUS_REPORT_SECONDS
        )
        if changed:
            level = logging.INFO if ready[0] else logging.WARNING
            log.log(level, "node %s is now %s: %s", self.settings.node_name, ready[1], ready[2])
        if changed or due:
            self.api.patch_status(self.settings.node_name, node_status(self.settings, ready, now))
            self._last_status_at = now
        self.ready = ready

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        outage = FailingLoop(log, "node heartbeat")
        while not self._stop.wait(LEASE_RENEW_SECONDS):
            try:
                self.heartbeat()
            except Exception as e:
                outage.failed(e, LEASE_RENEW_SECONDS)
            else:
                outage.succeeded()
