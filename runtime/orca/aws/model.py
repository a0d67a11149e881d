"""Plain values that cross the AWS edge, free of boto3 types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

# A capacity block is EC2's market of its own: an instance launched into a block bought
# ahead of time, whose whole fee was paid at the purchase.
Market = Literal["on-demand", "spot", "capacity-block"]

# EC2 instance states; "gone" covers both shutting-down and terminated.
LIVE_STATES = frozenset({"pending", "running", "stopping", "stopped"})


@dataclass(frozen=True)
class ReservationChoice:
    """How one launch uses On-Demand Capacity Reservations.

    ``open`` is EC2's default: the instance runs in an open reservation that matches it
    (type, platform, zone, tenancy) when one has room, else as plain on-demand. ``none``
    never uses a reservation. ``targeted`` launches only into the named reservation or
    into a member of the named reservation group, and fails when none has room. Only
    on-demand launches use reservations, never spot.
    """

    preference: Literal["open", "none", "targeted"] = "open"
    reservation_id: str | None = None
    group_arn: str | None = None

    @classmethod
    def reservation(cls, reservation_id: str) -> ReservationChoice:
        return cls("targeted", reservation_id=reservation_id)

    @classmethod
    def group(cls, group_arn: str) -> ReservationChoice:
        return cls("targeted", group_arn=group_arn)

    def __post_init__(self) -> None:
        targets = (self.reservation_id is not None) + (self.group_arn is not None)
        if targets != (1 if self.preference == "targeted" else 0):
            raise ValueError("a targeted choice names one reservation or one group; others none")


OPEN_RESERVATIONS = ReservationChoice()


@dataclass(frozen=True)
class LaunchRequest:
    """Everything one RunInstances call needs; exactly one instance is asked for."""

    instance_type: str
    subnet_id: str
    launch_template_id: str
    client_token: str
    user_data: str
    tags: Mapping[str, str]
    market: Market = "on-demand"
    max_spot_price: Decimal | None = None  # USD per hour; None means the on-demand price
    root_volume_gib: int | None = None
    root_device_name: str = "/dev/xvda"
    security_group_ids: tuple[str, ...] = ()
    reservation: ReservationChoice = OPEN_RESERVATIONS


@dataclass(frozen=True)
class Instance:
    """What ORCA needs to know of one EC2 instance."""

    instance_id: str
    instance_type: str
    state: str
    availability_zone: str
    launch_time: datetime
    tags: Mapping[str, str] = field(default_factory=dict)
    private_ip: str | None = None
    spot: bool = False
    # Launched into a capacity block (EC2's InstanceLifecycle capacity-block).
    capacity_block: bool = False
    state_reason: str | None = None
    # The capacity reservation the instance runs in, if any.
    capacity_reservation_id: str | None = None
    # arn:<partition>:ec2:<region>:<account>:instance/<id>, what IAM calls the instance in
    # ec2:SourceInstanceARN; None where the answer named no owner account.
    arn: str | None = None
    # When EC2 moved the instance to shutting-down or terminated, where it says so (its
    # StateTransitionReason "User initiated (2026-12-04 19:27:36 GMT)"); billing stops then.
    ended_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def market(self) -> Market:
        if self.capacity_block:
            return "capacity-block"
        return "spot" if self.spot else "on-demand"


def instance_arn(partition: str, region: str, account: str, instance_id: str) -> str:
    """The instance's ARN, as IAM resolves ``${ec2:SourceInstanceARN}`` for its role."""
    return f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"


@dataclass(frozen=True)
class CapacityReservation:
    """One capacity reservation as DescribeCapacityReservations tells it.

    ``reservation_type`` is ``default`` for an On-Demand Capacity Reservation and
    ``capacity-block`` for a Capacity Block for ML; a block runs from ``start`` to
    ``end`` and its ``state`` is ``scheduled`` before it starts, ``active`` while it runs.
    """

    reservation_id: str
    instance_type: str
    availability_zone: str
    state: str
    reservation_type: str
    total_count: int
    available_count: int
    start: datetime | None = None
    end: datetime | None = None

    @property
    def capacity_block(self) -> bool:
        return self.reservation_type == "capacity-block"


@dataclass(frozen=True)
class Subnet:
    subnet_id: str
    availability_zone: str
    vpc_id: str
