"""Reserved capacity: each configured reservation, and the group the runtime targets.

Each reservation is targeted (only launches that name it, or its group, use it) and ends on
its configured date, so none is paid for forever; the configuration refuses one without an
end date. The reservations sit in a resource group of type
``AWS::EC2::CapacityReservationPool``, which a launch can target as a whole. On-Demand
Capacity Reservations serve on-demand launches only, never spot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from orca_infra.config import Reservation


@dataclass(frozen=True)
class CapacityArgs:
    reservations: Sequence[Reservation]
    tags: dict[str, str]


class Capacity(pulumi.ComponentResource):
    """The reservations and their pool group (only when there are reservations)."""

    group_arn: pulumi.Output[str] | None

    def __init__(
        self, name: str, args: CapacityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:capacity:Capacity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.reservations = [
            aws.ec2.CapacityReservation(
                f"{name}-{r.instance_type}-{r.availability_zone}-{i}",
                instance_type=r.instance_type,
                availability_zone=r.availability_zone,
                instance_count=r.count,
                instance_platform="Linux/UNIX",
                instance_match_criteria="targeted",
                end_date_type="limited",
                end_date=r.end_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
                tenancy="default",
                tags=args.tags,
                opts=child,
            )
            for i, r in enumerate(args.reservations)
        ]

        self.group_arn = None
        if self.reservations:
            group = aws.resourcegroups.Group(
                f"{name}-pool",
                description="ORCA: the department's capacity reservations",
                configurations=[
                    {"type": "AWS::EC2::CapacityReservationPool"},
                    {
                        "type": "AWS::ResourceGroups::Generic",
                        "parameters": [
                            {
                                "name": "allowed-resource-types",
                                "values": ["AWS::EC2::CapacityReservation"],
                            }
                        ],
                    },
                ],
                tags=args.tags,
                opts=child,
            )
            for i, reservation in enumerate(self.reservations):
                aws.resourcegroups.Resource(
                    f"{name}-pool-{i}",
                    group_arn=group.arn,
                    resource_arn=reservation.arn,
                    opts=child,
                )
            self.group_arn = group.arn

        self.register_outputs(
            {
                "reservationIds": [r.id for r in self.reservations],
                "groupArn": self.group_arn,
            }
        )

    @property
    def arns(self) -> list[pulumi.Output[str]]:
        return [r.arn for r in self.reservations]
