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

from orca.aws.errors import AwsError, is_denied, is_reservation_not_found
from orca.contract import CAPACITY_RESERVATION, LaunchSpec, Rejection
from orca.settings import Settings


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
    return Rejection(
        CAPACITY_RESERVATION,
        reservation,
        f"{problem} ({error.code})",
        f"{choices}, or the id of one of the department's own reservations",
    )
