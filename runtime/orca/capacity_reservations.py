"""Capacity reservations as one pod's launch meets them, in words for its Events.

The contract (:mod:`orca.contract`) turns ``orca.research/capacity-reservation`` into a
:class:`~orca.aws.model.ReservationChoice` and the EC2 gateway into RunInstances'
``CapacityReservationSpecification``. A launch confined to a reservation or to the
department's reservation group fails in two ways of its own, told apart here:

- the capacity is taken (EC2's ``ReservationCapacityExceeded``, a capacity error): the pod
  waits like any pod short of capacity, and the Event says that the reservation or group
  has no free slot for its type in that zone;
- the reservation does not exist, or the department's IAM policy does not let ORCA use it
  (another department's): waiting cannot help, so the pod fails with a
  :class:`~orca.contract.Rejection` naming the annotation, as for any bad value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from orca.aws.errors import AwsError, is_denied, is_reservation_not_found
from orca.aws.model import CapacityReservation
from orca.bootstrap import DEADLINE_GRACE
from orca.contract import AVAILABILITY_ZONE, CAPACITY_RESERVATION, LaunchSpec, Rejection
from orca.ledger_records import iso
from orca.settings import Settings

# EC2 starts ending a capacity block's instances this long before the block ends.
CAPACITY_BLOCK_ENDING = timedelta(minutes=30)
# A block that leaves a pod less than this is not worth a launch (boot, pull, run).
CAPACITY_BLOCK_SHORTEST_RUN = timedelta(minutes=10)


def target(spec: LaunchSpec, settings: Settings) -> str | None:
    """The capacity a launch is confined to, in words; None when it is not confined."""
    if spec.reservation.reservation_id is not None:
        return f"capacity reservation {spec.reservation.reservation_id}"
    if spec.reservation.group_arn is not None:
        return f"the {settings.department} department's capacity reservation group"
    return None


def shortage(spec: LaunchSpec, settings: Settings, where: str) -> str:
    """What has no room for the launch ``where`` (a zone, or a list of them)."""
    confined = target(spec, settings)
    if confined is None:
        return f"No {spec.instance_type.name} {spec.market} capacity in {where}"
    confined = confined[:1].upper() + confined[1:]
    return f"{confined} has no free {spec.instance_type.name} capacity in {where}"


def refusal(spec: LaunchSpec, settings: Settings, error: BaseException) -> Rejection | None:
    """The pod's bad reservation id behind ``error``, or None if the error is not about it.

    Only a launch that names a reservation can be refused for it: for any other launch a
    NotFound or AccessDenied means the envelope itself is broken.
    """
    reservation = spec.reservation.reservation_id
    if reservation is None or not isinstance(error, AwsError):
        return None
    if is_reservation_not_found(error):
        problem = f"EC2 knows no capacity reservation {reservation} in {settings.region}"
    elif is_denied(error):
        problem = (
            f"the {settings.department} department may not launch into capacity reservation "
            f"{reservation}: its IAM policy allows only the department's own reservations"
        )
    else:
        return None
    choices = "open, none, group" if settings.capacity_reservation_group_arn else "open, none"
    allowed = f"{choices}, or the id of one of the department's own reservations"
    if spec.market == "capacity-block":
        allowed = (
            f"the id of a capacity block the {settings.department} department bought, tagged "
            "with its orca.research/department and orca.research/cluster"
        )
    return Rejection(CAPACITY_RESERVATION, reservation, f"{problem} ({error.code})", allowed)


@dataclass(frozen=True)
class BlockWindow:
    """What a capacity block allows a pod now: a launch stopping by ``stop_by``, a wait
    until ``starts``, or ``rejection`` (the pod fails)."""

    stop_by: datetime | None = None
    starts: datetime | None = None
    rejection: Rejection | None = None


def block_window(spec: LaunchSpec, block: CapacityReservation, now: datetime) -> BlockWindow:
    """Check a capacity-block pod against its block, as DescribeCapacityReservations has it.

    The pod must stop before EC2 starts ending the block's instances, 30 minutes before
    its end, with the runtime's grace past a deadline to spare.
    """
    block_id = block.reservation_id

    def refused(problem: str, allowed: str, reason: str = "InvalidAnnotation") -> BlockWindow:
        rejection = Rejection(CAPACITY_RESERVATION, block_id, problem, allowed, reason)
        return BlockWindow(rejection=rejection)

    if not block.capacity_block:
        return refused(
            "it is an On-Demand Capacity Reservation, not a capacity block",
            "a capacity block's id; an On-Demand Capacity Reservation's with launch-type on-demand",
        )
    if block.instance_type != spec.instance_type.name:
        return refused(
            f"the capacity block holds {block.instance_type}, and the pod asks for "
            f"{spec.instance_type.name}",
            f"the id of a block of {spec.instance_type.name}, or instance-type "
            f"{block.instance_type}",
        )
    if spec.availability_zone != block.availability_zone:
        return refused(
            f"the capacity block is in {block.availability_zone}, not {spec.availability_zone}",
            f"{AVAILABILITY_ZONE} {block.availability_zone}",
        )
    assert block.start is not None and block.end is not None
    if block.state in ("scheduled", "payment-pending") or now < block.start:
        return BlockWindow(starts=block.start)
    stop_by = block.end - CAPACITY_BLOCK_ENDING - DEADLINE_GRACE
    least = CAPACITY_BLOCK_ENDING + DEADLINE_GRACE + CAPACITY_BLOCK_SHORTEST_RUN
    if block.state != "active" or stop_by - now < CAPACITY_BLOCK_SHORTEST_RUN:
        left = max(int((block.end - now).total_seconds() // 60), 0)
        return refused(
            f"the capacity block ends at {iso(block.end)}, in {left} minutes (it is "
            f"{block.state}); EC2 starts ending its instances "
            f"{CAPACITY_BLOCK_ENDING.seconds // 60} minutes before, which leaves this pod "
            f"less than the {CAPACITY_BLOCK_SHORTEST_RUN.seconds // 60} minutes it needs",
            f"a capacity block with more than {least.seconds // 60} minutes left, or one not "
            "started yet",
            reason="CapacityBlockEnded",
        )
    return BlockWindow(stop_by=stop_by.replace(microsecond=0))
