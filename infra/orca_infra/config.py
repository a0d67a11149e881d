"""The stack's configuration: read once, typed and validated before any resource exists.

Every key lives in the project namespace (``orca:<key>``) and is declared with its type,
description and default in ``Pulumi.yaml``. :func:`load_config` reads them all, validates
them with one pydantic model and raises :class:`ConfigError` naming each bad key and the
reason, so ``pulumi preview`` and ``pulumi up`` stop before they touch anything.

The kubeconfig is a secret: it stays a ``pulumi.Output`` and is only checked for presence,
so its value never reaches a log or an error message.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from datetime import datetime
from typing import Annotated, Any

import pulumi
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from orca import tags

PROJECT = "orca"

# Keys whose values are structured (lists and objects): Pulumi hands them over as JSON.
_STRUCTURED = ("budgetAlertEmails", "allowedInstanceTypes", "network", "capacityReservations")
_PLAIN = (
    "department",
    "budget",
    "costCenter",
    "clusterName",
    "maxInstances",
    "maxGpus",
    "oidcIssuerUrl",
    "oidcProviderArn",
    "runtimeImage",
    "namespace",
    "logRetentionDays",
    "bundleExpiryDays",
    "kubeletTlsSecret",
)

_DEPARTMENT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_INSTANCE_TYPE = re.compile(r"^(\*|[a-z][a-z0-9-]*\.(\*|[a-z0-9]+))$")
_ZONE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


class ConfigError(Exception):
    """The stack configuration cannot build an envelope; the message names every bad key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CreatedNetwork(_Model):
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
        bad = [z for z in value if not _ZONE.match(z)]
        if bad or len(set(value)) != len(value):
            raise ValueError(f"expected distinct zone names like us-east-1a, got {value}")
        return value

    @field_validator("on_prem_cidr")
    @classmethod
    def _on_prem_is_a_cidr(cls, value: str | None) -> str | None:
        return None if value is None else str(ipaddress.ip_network(value))


class AdoptedNetwork(_Model):
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


class Reservation(_Model):
    """An On-Demand Capacity Reservation; it always ends, so nothing is paid for forever."""

    instance_type: str = Field(alias="instanceType", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
    availability_zone: str = Field(alias="availabilityZone", pattern=_ZONE.pattern)
    count: int = Field(ge=1, le=1000)
    end_date: datetime = Field(alias="endDate")

    @field_validator("end_date")
    @classmethod
    def _end_date_has_a_zone(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must carry a time zone, e.g. 2027-06-30T00:00:00Z")
        return value


class StackConfig(_Model):
    """Everything one department's stack is built from."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, arbitrary_types_allowed=True
    )

    stack: str
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    department: str
    budget: int = Field(gt=0, description="USD per month")
    cost_center: str | None = Field(default=None, alias="costCenter")
    cluster_name: str = Field(alias="clusterName", min_length=1, max_length=100)
    budget_alert_emails: list[str] = Field(alias="budgetAlertEmails", min_length=1)
    allowed_instance_types: list[str] = Field(
        default_factory=lambda: ["*"], alias="allowedInstanceTypes", min_length=1
    )
    max_instances: int = Field(default=100, alias="maxInstances", ge=1, le=10_000)
    max_gpus: int = Field(default=64, alias="maxGpus", ge=0)
    network: Annotated[
        Annotated[CreatedNetwork, Tag("create")] | Annotated[AdoptedNetwork, Tag("adopt")],
        Discriminator(lambda v: "adopt" if _get(v, "vpcId", "vpc_id") else "create"),
    ]
    capacity_reservations: list[Reservation] = Field(
        default_factory=list, alias="capacityReservations"
    )
    oidc_issuer_url: str | None = Field(
        default=None, alias="oidcIssuerUrl", pattern=r"^https://[^\s/]+(/[^\s]*)?$"
    )
    # IAM allows one OIDC provider per issuer and account: the first department's stack
    # creates it, the others name it here.
    oidc_provider_arn: str | None = Field(
        default=None,
        alias="oidcProviderArn",
        pattern=r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/.+$",
    )
    runtime_image: str = Field(alias="runtimeImage", min_length=1)
    namespace: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    log_retention_days: int = Field(default=30, alias="logRetentionDays")
    bundle_expiry_days: int = Field(default=7, alias="bundleExpiryDays", ge=1, le=365)
    kubelet_tls_secret: str | None = Field(default=None, alias="kubeletTlsSecret")
    kubeconfig: Any = Field(exclude=True)

    @field_validator("department")
    @classmethod
    def _department_is_a_dns_label(cls, value: str) -> str:
        if not _DEPARTMENT.match(value):
            raise ValueError(
                "must be 1-40 lowercase letters, digits or '-', starting and ending with a "
                "letter or digit (it names the node orca-<department> and AWS resources)"
            )
        return value

    @field_validator("budget_alert_emails")
    @classmethod
    def _emails_are_addresses(cls, value: list[str]) -> list[str]:
        bad = [e for e in value if not _EMAIL.match(e)]
        if bad:
            raise ValueError(f"not e-mail addresses: {', '.join(bad)}")
        return value

    @field_validator("allowed_instance_types")
    @classmethod
    def _types_are_exact_or_family_wildcards(cls, value: list[str]) -> list[str]:
        bad = [t for t in value if not _INSTANCE_TYPE.match(t)]
        if bad:
            raise ValueError(
                f"not instance types: {', '.join(bad)} (exact types like c7i.4xlarge, "
                "family wildcards like g6e.*, or *)"
            )
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _retention_is_one_cloudwatch_accepts(cls, value: int) -> int:
        if value not in _RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs accepts only {list(_RETENTION_DAYS)}")
        return value

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig_is_set(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("is required: pulumi config set --secret kubeconfig < kubeconfig")
        return value

    @model_validator(mode="after")
    def _provider_needs_its_issuer(self) -> StackConfig:
        if self.oidc_provider_arn and not self.oidc_issuer_url:
            raise ValueError(
                f"{PROJECT}:oidcProviderArn: set {PROJECT}:oidcIssuerUrl too (the trust policy "
                "names the issuer)"
            )
        return self

    @model_validator(mode="after")
    def _reservations_fit_the_envelope(self) -> StackConfig:
        for i, reservation in enumerate(self.capacity_reservations):
            allowed = any(
                fnmatch.fnmatchcase(reservation.instance_type, pattern)
                for pattern in self.allowed_instance_types
            )
            if not allowed:
                raise ValueError(
                    f"{PROJECT}:capacityReservations[{i}].instanceType: "
                    f"{reservation.instance_type} is not in "
                    "allowedInstanceTypes, so no pod could use the reservation"
                )
            zones = getattr(self.network, "zones", None)
            if zones is not None and reservation.availability_zone not in zones:
                raise ValueError(
                    f"{PROJECT}:capacityReservations[{i}].availabilityZone: "
                    f"{reservation.availability_zone} has no subnet "
                    f"of this stack (network.zones: {', '.join(zones)})"
                )
        return self

    @property
    def node_name(self) -> str:
        return tags.node_name(self.department)

    @property
    def prefix(self) -> str:
        """The base of every resource name of this stack."""
        return f"orca-{self.department}"

    @property
    def runtime_namespace(self) -> str:
        """Each department's runtime has a namespace of its own unless one is configured."""
        return self.namespace or f"orca-{self.department}"

    @property
    def service_account(self) -> str:
        return f"orca-{self.department}"

    @property
    def creates_network(self) -> bool:
        return isinstance(self.network, CreatedNetwork)

    @property
    def resource_tags(self) -> dict[str, str]:
        """Tags on every AWS resource of the stack: the cost tags Budgets filter on, and ORCA's."""
        result = {tags.COST_DEPARTMENT: self.department}
        if self.cost_center:
            result[tags.COST_CENTER] = self.cost_center
        result.update(tags.ownership_filter(cluster=self.cluster_name, department=self.department))
        return result


def load_config() -> StackConfig:
    """Read every ``orca:*`` key (and ``aws:region``) once; raise :class:`ConfigError` if bad."""
    config = pulumi.Config(PROJECT)
    raw: dict[str, Any] = {"stack": pulumi.get_stack()}
    raw["region"] = pulumi.Config("aws").get("region")
    problems: list[str] = []

    # Pulumi.yaml declares "" as the default of optional text keys: the same as unset.
    for key in _PLAIN:
        value = config.get(key)
        if value:
            raw[key] = value
    for key in _STRUCTURED:
        text = config.get(key)
        if text is None:
            continue
        try:
            raw[key] = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(f"  {PROJECT}:{key}: not a list or object ({e})")
    raw["kubeconfig"] = config.get_secret("kubeconfig")

    try:
        return StackConfig.model_validate(raw)
    except ValidationError as e:
        problems.extend(_describe(error) for error in e.errors())
    raise ConfigError(
        "the stack configuration is invalid; fix these keys with `pulumi config set` "
        "(nothing was created):\n" + "\n".join(problems)
    )


def _describe(error: Any) -> str:
    location = [str(part) for part in error["loc"]]
    # A union (network) reports each alternative's model name; they say nothing to a person.
    location = [part for part in location if part not in ("create", "adopt")]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not location:
        return f"  {message}"
    head, *rest = location
    namespace = "aws" if head == "region" else PROJECT
    key = f"{namespace}:{_ALIASES.get(head, head)}" + "".join(
        f"[{part}]" if part.isdigit() else f".{part}" for part in rest
    )
    given = error.get("input")
    shown = ""
    if error["type"] != "missing" and isinstance(given, str | int | float) and head != "kubeconfig":
        shown = f" (got {given!r})"
    return f"  {key}: {message}{shown}"


def _get(value: Any, *names: str) -> Any:
    if isinstance(value, dict):
        return next((value[n] for n in names if n in value), None)
    return next((getattr(value, n) for n in names if hasattr(value, n)), None)


_ALIASES = {
    name: field.alias for name, field in StackConfig.model_fields.items() if field.alias is not None
}
