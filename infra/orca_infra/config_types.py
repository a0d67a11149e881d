"""The structured parts of the stack's configuration: the network and the reservations.

The network is created, adopted (an existing VPC's subnets) or shared (another ORCA stack's,
through a StackReference).

:mod:`orca_infra.config` validates the whole configuration with these models inside its
``StackConfig``; the components take them as they are (``Network``, ``Capacity``).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

ZONE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")


class FrozenModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CreatedNetwork(FrozenModel):
    """A VPC of the stack's own: private subnets across ``zones``, one NAT gateway."""

    cidr: str = "10.64.0.0/16"
    zones: list[str] = Field(min_length=1, max_length=6)
    interface_endpoints: bool = Field(default=False, alias="interfaceEndpoints")
    on_prem_cidr: str | None = Field(default=None, alias="onPremCidr")

    @field_validator("cidr")
    @classmethod
    def _cidr_fits_subnets(cls, value: str) -> str:
        network = ipaddress.ip_network(value)
        if network.version != 4 or not 16 <= network.prefixlen <= 22:
            raise ValueError("must be an IPv4 CIDR from /16 to /22 (it is split into subnets)")
        return str(network)

    @field_validator("zones")
    @classmethod
    def _zones_are_zones(cls, value: list[str]) -> list[str]:
        bad = [z for z in value if not ZONE.match(z)]
        if bad or len(set(value)) != len(value):
            raise ValueError(f"expected distinct zone names like us-east-1a, got {value}")
        return value

    @field_validator("on_prem_cidr")
    @classmethod
    def _on_prem_is_a_cidr(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value))


class AdoptedNetwork(FrozenModel):
    """An existing VPC (shared with other departments): only the security group is created."""

    vpc_id: str = Field(alias="vpcId", pattern=r"^vpc-[0-9a-f]{8,17}$")
    subnet_ids: list[str] = Field(alias="subnetIds", min_length=1)
    on_prem_cidr: str | None = Field(default=None, alias="onPremCidr")

    @field_validator("subnet_ids")
    @classmethod
    def _subnets_are_subnets(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not re.match(r"^subnet-[0-9a-f]{8,17}$", s)]
        if bad:
            raise ValueError(f"not subnet ids: {', '.join(bad)}")
        return value

    @field_validator("on_prem_cidr")
    @classmethod
    def _on_prem_is_a_cidr(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value))


class SharedNetwork(FrozenModel):
    """Another ORCA stack's network, read through a StackReference to that stack's outputs.

    Departments of one institution can share a VPC and its single NAT gateway: one stack
    creates (or adopts) the network, the others name that stack here and create only their own
    security group in it. ``stack`` is the fully qualified name Pulumi prints for the stack
    (``<organization>/orca/<stack>``), or just ``<stack>`` within the same organization.
    """

    stack: str = Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){0,2}$")
    on_prem_cidr: str | None = Field(default=None, alias="onPremCidr")

    @field_validator("on_prem_cidr")
    @classmethod
    def _on_prem_is_a_cidr(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value))


class Reservation(FrozenModel):
    """An On-Demand Capacity Reservation; it always ends, so nothing is paid for forever."""

    instance_type: str = Field(alias="instanceType", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    availability_zone: str = Field(alias="availabilityZone", pattern=ZONE.pattern)
    count: int = Field(ge=1, le=1000)
    end_date: datetime = Field(alias="endDate")

    @field_validator("end_date")
    @classmethod
    def _end_date_is_a_future_instant(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2027-06-30T00:00:00Z")
        # EC2 takes the end date in UTC; an offset such as +02:00 is converted, not dropped.
        value = value.astimezone(UTC)
        if value <= datetime.now(UTC):
            raise ValueError(
                f"{value:%Y-%m-%dT%H:%M:%SZ} is not in the future; a reservation must end "
                "after it is created"
            )
        return value
