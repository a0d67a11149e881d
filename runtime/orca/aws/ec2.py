"""The EC2 gateway: launching, listing and terminating ORCA's instances.

:class:`Ec2` is the only code that builds EC2 requests. Each call waits for a
token from the :class:`~orca.aws.ratelimit.Pacer` first and translates failures
into :mod:`orca.aws.errors`; throttled calls are retried by botocore's retry
mode, never by a loop here. ``tests/fakes/ec2.py`` holds a stateful fake with
the same public methods for the controller's unit tests.

Facts of EC2 this module relies on:

- RunInstances with a ``ClientToken`` is idempotent for the account and region:
  the same token returns the same instance (even once terminated) instead of a
  second one, and the same token with other parameters fails with
  ``IdempotentParameterMismatch``. The token is at most 64 ASCII characters.
- ``InstanceInitiatedShutdownBehavior=terminate`` makes a shutdown from inside
  the instance (the agent powering off) end it and its bill. A one-time spot
  instance cannot be stopped, so terminate is its only outcome anyway; EC2
  accepts the explicit value with spot market options, so it is always sent.
- Tag specifications on ``instance``, ``volume`` and ``network-interface`` tag
  the resources at creation, so nothing exists untagged even for a moment.
- Terminated instances stay visible to DescribeInstances for about an hour;
  terminating one again succeeds. Only ids EC2 never knew are NotFound, and
  TerminateInstances then rejects the whole batch, naming the unknown ids.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from orca.aws.errors import NotFoundError, aws_call
from orca.aws.model import CapacityReservation, Instance, LaunchRequest, Subnet, instance_arn
from orca.aws.ratelimit import Pacer
from orca.tags import POD as POD_TAG

log = logging.getLogger(__name__)

# EC2 accepts at most 1000 ids per TerminateInstances and 1000 results per page;
# a filter accepts at most 200 values.
TERMINATE_BATCH = 1000
PAGE_SIZE = 1000
FILTER_VALUES_MAX = 200
CLIENT_TOKEN_MAX = 64

# Every state but terminated: shutting-down instances still cost money and must be seen.
NOT_TERMINATED = ("pending", "running", "shutting-down", "stopping", "stopped")

_INSTANCE_ID = re.compile(r"i-[0-9a-f]+")
# EC2 writes the time of a user-initiated stop or termination into StateTransitionReason,
# "User initiated (2026-12-04 19:27:36 GMT)"; moto writes UTC for GMT.
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (GMT|UTC)\)")


class Ec2:
    """ORCA's EC2 calls over one boto3 EC2 client, paced below the account's limits."""

    def __init__(self, client: Any, pacer: Pacer | None = None, *, page_size: int = PAGE_SIZE):
        self._client = client
        self._pacer = pacer or Pacer()
        self._page_size = page_size
        self._partition = str(client.meta.partition)
        self._region = str(client.meta.region_name)

    def _instance(self, raw: Mapping[str, Any], owner: str | None) -> Instance:
        instance = instance_from_api(raw)
        if owner is None:
            return instance
        arn = instance_arn(self._partition, self._region, owner, instance.instance_id)
        return dataclasses.replace(instance, arn=arn)

    def _call(self, operation: str, context: str, **params: Any) -> dict[str, Any]:
        self._pacer.acquire(operation)
        method = getattr(self._client, _snake(operation))
        with aws_call(context):
            response: dict[str, Any] = method(**params)
        return response

    def run_instance(self, req: LaunchRequest) -> Instance:
        """Launch exactly one instance for ``req``; the same client token returns the same one."""
        if len(req.client_token) > CLIENT_TOKEN_MAX:
            raise ValueError(
                f"client token {req.client_token!r} is longer than EC2's {CLIENT_TOKEN_MAX}"
            )
        context = f"launching {req.instance_type} for {_pod_of(req.tags)}"
        response = self._call("RunInstances", context, **run_instances_params(req))
        instance = self._instance(response["Instances"][0], response.get("OwnerId"))
        log.info(
            "launched %s (%s, %s) in %s for %s",
            instance.instance_id,
            req.instance_type,
            req.market,
            instance.availability_zone,
            _pod_of(req.tags),
        )
        return instance

    def terminate(self, instance_ids: Iterable[str]) -> None:
        """Terminate instances; ids EC2 does not know are taken as already gone."""
        ids = list(dict.fromkeys(instance_ids))
        for start in range(0, len(ids), TERMINATE_BATCH):
            self._terminate_batch(ids[start : start + TERMINATE_BATCH])

    def _terminate_batch(self, ids: list[str]) -> None:
        context = f"terminating {len(ids)} instance(s) {_preview(ids)}"
        try:
            self._call("TerminateInstances", context, InstanceIds=ids)
        except NotFoundError as e:
            # EC2 rejects the whole batch and names the unknown ids; the others still need it.
            unknown = set(_INSTANCE_ID.findall(e.aws_message))
            rest = [i for i in ids if i not in unknown]
            log.info("instances %s are already gone", ", ".join(sorted(unknown)) or "(unnamed)")
            if rest and unknown:
                self._terminate_batch(rest)
            elif rest:
                for instance_id in rest:
                    self._terminate_one(instance_id)
            return
        log.info("terminating %s", ", ".join(ids))

    def _terminate_one(self, instance_id: str) -> None:
        try:
            self._call(
                "TerminateInstances", f"terminating {instance_id}", InstanceIds=[instance_id]
            )
        except NotFoundError:
            log.info("instance %s is already gone", instance_id)

    def list_instances(
        self, tag_filter: Mapping[str, str], *, include_terminated: bool = False
    ) -> list[Instance]:
        """Every instance that carries all of ``tag_filter``, terminated ones only if asked.

        One paginated DescribeInstances per call: the reconcile loop calls this once
        per cycle for all pods instead of describing instances one by one.
        """
        filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tag_filter.items()]
        if not include_terminated:
            filters.append({"Name": "instance-state-name", "Values": list(NOT_TERMINATED)})
        context = f"listing instances tagged {dict(tag_filter)}"
        return list(self._describe(filters, context))

    def get_instances(self, instance_ids: Iterable[str]) -> list[Instance]:
        """The instances among ``instance_ids`` that EC2 knows, terminated ones included.

        An id filter, unlike ``InstanceIds``, answers unknown ids (not yet visible, or
        long gone) with nothing instead of failing the whole call.
        """
        ids = list(dict.fromkeys(instance_ids))
        found: list[Instance] = []
        for start in range(0, len(ids), FILTER_VALUES_MAX):
            chunk = ids[start : start + FILTER_VALUES_MAX]
            filters = [{"Name": "instance-id", "Values": chunk}]
            found.extend(self._describe(filters, f"describing instances {_preview(chunk)}"))
        return found

    def _describe(self, filters: list[dict[str, Any]], context: str) -> Iterator[Instance]:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Filters": filters, "MaxResults": self._page_size}
            if token:
                params["NextToken"] = token
            page = self._call("DescribeInstances", context, **params)
            for reservation in page.get("Reservations", []):
                for raw in reservation.get("Instances", []):
                    yield self._instance(raw, reservation.get("OwnerId"))
            token = page.get("NextToken")
            if not token:
                return

    def describe_subnets(self, subnet_ids: Sequence[str]) -> list[Subnet]:
        response = self._call(
            "DescribeSubnets", f"describing subnets {_preview(subnet_ids)}", SubnetIds=subnet_ids
        )
        return [
            Subnet(
                subnet_id=raw["SubnetId"],
                availability_zone=raw["AvailabilityZone"],
                vpc_id=raw["VpcId"],
            )
            for raw in response.get("Subnets", [])
        ]

    def describe_capacity_reservation(self, reservation_id: str) -> CapacityReservation:
        """One capacity reservation (or capacity block); NotFoundError if EC2 knows none."""
        response = self._call(
            "DescribeCapacityReservations",
            f"describing capacity reservation {reservation_id}",
            CapacityReservationIds=[reservation_id],
        )
        [raw] = response["CapacityReservations"]
        return CapacityReservation(
            reservation_id=raw["CapacityReservationId"],
            instance_type=raw["InstanceType"],
            availability_zone=raw["AvailabilityZone"],
            state=raw["State"],
            reservation_type=raw.get("ReservationType", "default"),
            total_count=int(raw.get("TotalInstanceCount", 0)),
            available_count=int(raw.get("AvailableInstanceCount", 0)),
            start=_aware(raw.get("StartDate")),
            end=_aware(raw.get("EndDate")),
        )

    def check_access(self) -> None:
        """Raise AuthError or UnreachableError unless EC2 answers with these credentials.

        DescribeAvailabilityZones is cheap, needs only ec2:Describe* and touches no
        resource; the virtual node is Ready only while this succeeds.
        """
        self._call("DescribeAvailabilityZones", "checking access to EC2")


def run_instances_params(req: LaunchRequest) -> dict[str, Any]:
    """The RunInstances parameters for one launch request."""
    tags = [{"Key": key, "Value": value} for key, value in req.tags.items()]
    params: dict[str, Any] = {
        "MinCount": 1,
        "MaxCount": 1,
        "LaunchTemplate": {"LaunchTemplateId": req.launch_template_id, "Version": "$Default"},
        "InstanceType": req.instance_type,
        # The interface is spelled out so that no subnet default (MapPublicIpOnLaunch,
        # or a default VPC's public addressing) can give a burst instance a public IP.
        "NetworkInterfaces": [
            {
                "DeviceIndex": 0,
                "SubnetId": req.subnet_id,
                "AssociatePublicIpAddress": False,
                "DeleteOnTermination": True,
                **({"Groups": list(req.security_group_ids)} if req.security_group_ids else {}),
            }
        ],
        "ClientToken": req.client_token,
        # boto3 base64-encodes UserData for RunInstances itself.
        "UserData": req.user_data,
        "TagSpecifications": [
            {"ResourceType": kind, "Tags": tags}
            for kind in ("instance", "volume", "network-interface")
        ],
        "InstanceInitiatedShutdownBehavior": "terminate",
    }
    if req.market == "spot":
        spot: dict[str, Any] = {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        }
        if req.max_spot_price is not None:
            spot["MaxPrice"] = str(req.max_spot_price)
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
    elif req.market == "capacity-block":
        params["InstanceMarketOptions"] = {"MarketType": "capacity-block"}
    reservation = _reservation_specification(req)
    if reservation is not None:
        params["CapacityReservationSpecification"] = reservation
    if req.root_volume_gib is not None:
        params["BlockDeviceMappings"] = [
            {
                "DeviceName": req.root_device_name,
                "Ebs": {
                    "VolumeSize": req.root_volume_gib,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ]
    return params


def _reservation_specification(req: LaunchRequest) -> dict[str, Any] | None:
    """The CapacityReservationSpecification for ``req``; None leaves EC2's default, open."""
    choice = req.reservation
    if req.market == "capacity-block" and choice.reservation_id is None:
        raise ValueError("a capacity-block launch names its block's capacity reservation id")
    if choice.preference == "open":
        return None
    if req.market == "spot":
        # On-Demand Capacity Reservations never serve spot: avoiding them is what spot does.
        if choice.preference == "targeted":
            raise ValueError("capacity reservations serve only on-demand launches, not spot")
        return None
    if choice.preference == "none":
        return {"CapacityReservationPreference": "none"}
    # EC2 accepts a target only with the preference capacity-reservations-only, and then
    # fails the launch rather than running outside the reservation when it has no room.
    target = (
        {"CapacityReservationId": choice.reservation_id}
        if choice.reservation_id is not None
        else {"CapacityReservationResourceGroupArn": choice.group_arn}
    )
    return {
        "CapacityReservationPreference": "capacity-reservations-only",
        "CapacityReservationTarget": target,
    }


def instance_from_api(raw: Mapping[str, Any]) -> Instance:
    """An :class:`Instance` from one DescribeInstances/RunInstances instance structure."""
    launch_time = raw.get("LaunchTime")
    if not isinstance(launch_time, datetime):
        launch_time = datetime.now(UTC)
    reason = raw.get("StateReason", {}).get("Message") or raw.get("StateTransitionReason") or None
    return Instance(
        instance_id=raw["InstanceId"],
        instance_type=raw["InstanceType"],
        state=raw["State"]["Name"],
        availability_zone=raw.get("Placement", {}).get("AvailabilityZone", ""),
        launch_time=launch_time.astimezone(UTC),
        tags={tag["Key"]: tag["Value"] for tag in raw.get("Tags", [])},
        private_ip=raw.get("PrivateIpAddress") or None,
        spot=raw.get("InstanceLifecycle") == "spot",
        capacity_block=raw.get("InstanceLifecycle") == "capacity-block",
        state_reason=reason,
        capacity_reservation_id=raw.get("CapacityReservationId") or None,
        ended_at=_ended_at(raw),
    )


def _ended_at(raw: Mapping[str, Any]) -> datetime | None:
    """When a gone instance stopped billing, if EC2's transition reason names the time."""
    if raw["State"]["Name"] not in ("shutting-down", "terminated"):
        return None
    found = _TRANSITION_TIME.search(raw.get("StateTransitionReason") or "")
    if found is None:
        return None
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def _aware(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _pod_of(tags: Mapping[str, str]) -> str:
    return tags.get(POD_TAG, "an unknown pod")


def _preview(ids: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
