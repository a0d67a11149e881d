"""Launching one pod's instance exactly once.

Exactly-once rests on three facts. The EC2 ``ClientToken`` is derived from the
pod's UID and the launch attempt, and EC2 answers a repeated RunInstances with
the same token by returning the instance it already started. The zone (subnet)
of an attempt is derived from the same two values, and the deadline in its
user data is recorded with the intent, so a repeat is also identical in its
parameters (a token reused with other parameters is refused
with IdempotentParameterMismatch). And the caller records the attempt on the
pod before calling, so a runtime restarted mid-launch repeats the same call
rather than starting a second instance.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from orca import tags
from orca.aws.ec2 import Ec2
from orca.aws.model import Instance, LaunchRequest, Subnet
from orca.bootstrap import AgentConfig, render_user_data
from orca.contract import LaunchSpec
from orca.heartbeat import heartbeat_key
from orca.settings import Settings

log = logging.getLogger(__name__)

# EC2 accepts client tokens of up to 64 ASCII characters.
_TOKEN_LENGTH = 64


def client_token(pod_uid: str, attempt: int) -> str:
    """The RunInstances idempotency token for one launch attempt of one pod."""
    digest = hashlib.sha256(f"{pod_uid}/{attempt}".encode()).hexdigest()
    return f"orca-{attempt}-{digest}"[:_TOKEN_LENGTH]


def choose_subnet(
    subnets: Sequence[Subnet], spec: LaunchSpec, pod_uid: str, attempt: int
) -> Subnet:
    """The subnet for an attempt: the pinned zone's, else the next zone on each new attempt.

    Starting from a hash of the UID spreads pods over zones; moving on by one per
    attempt walks a pod through every zone when capacity errors repeat.
    """
    candidates = sorted(subnets, key=lambda s: (s.availability_zone, s.subnet_id))
    if spec.availability_zone is not None:
        candidates = [s for s in candidates if s.availability_zone == spec.availability_zone]
    if not candidates:
        raise ValueError(f"no burst subnet in {spec.availability_zone}")
    start = int(hashlib.sha256(pod_uid.encode()).hexdigest(), 16)
    return candidates[(start + attempt - 1) % len(candidates)]


@dataclass(frozen=True)
class LaunchPlan:
    """The exact RunInstances request for one attempt, with the subnet and deadline it has."""

    request: LaunchRequest
    subnet: Subnet
    deadline: datetime


class Launcher:
    def __init__(self, settings: Settings, ec2: Ec2, subnets: Sequence[Subnet]) -> None:
        self.settings = settings
        self.ec2 = ec2
        self.subnets = list(subnets)

    @property
    def zones(self) -> list[str]:
        return sorted({s.availability_zone for s in self.subnets})

    def plan(
        self,
        pod: dict,  # type: ignore[type-arg]
        spec: LaunchSpec,
        attempt: int,
        deadline: datetime,
    ) -> LaunchPlan:
        meta = pod["metadata"]
        uid = meta["uid"]
        subnet = choose_subnet(self.subnets, spec, uid, attempt)
        agent = AgentConfig(
            region=self.settings.region,
            cluster=self.settings.cluster_name,
            department=self.settings.department,
            pod_uid=uid,
            pod=f"{meta['namespace']}/{meta['name']}",
            bundle_bucket=self.settings.bundle_bucket,
            status_queue_url=self.settings.status_queue_url,
            log_group=self.settings.log_group,
            deadline=deadline,
            agent_image=self.settings.agent_image,
            spot=spec.market == "spot",
            heartbeat_url=f"s3://{self.settings.bundle_bucket}/"
            + heartbeat_key(self.settings.cluster_name, self.settings.department),
            runtime_lease_seconds=int(self.settings.runtime_lease.total_seconds()),
        )
        request = LaunchRequest(
            instance_type=spec.instance_type.name,
            subnet_id=subnet.subnet_id,
            launch_template_id=self.settings.launch_templates[spec.launch_template_kind],
            client_token=client_token(uid, attempt),
            user_data=render_user_data(agent),
            tags=tags.instance_tags(
                cluster=self.settings.cluster_name,
                department=self.settings.department,
                pod_namespace=meta["namespace"],
                pod_name=meta["name"],
                pod_uid=uid,
                attempt=attempt,
                cost_center=self.settings.cost_center,
                extra=self.settings.tags,
            ),
            market=spec.market,
            max_spot_price=spec.max_spot_price,
            root_volume_gib=spec.root_volume_gib,
            security_group_ids=tuple(self.settings.security_group_ids),
            reservation=spec.reservation,
        )
        return LaunchPlan(request=request, subnet=subnet, deadline=deadline)

    def launch(self, plan: LaunchPlan) -> Instance:
        return self.ec2.run_instance(plan.request)
