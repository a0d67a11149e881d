"""The stack's configuration: read once, typed and validated before any resource exists.

Every key lives in the project namespace (``orca:<key>``) and is declared with its type,
description and default in ``Pulumi.yaml``. :func:`load_config` reads them all, validates
them with one pydantic model and raises :class:`ConfigError` naming each bad key and the
reason, so ``pulumi preview`` and ``pulumi up`` stop before they touch anything.

The kubeconfig and the kubelet API's certificate, key and client CA are secrets: they stay
``pulumi.Output`` values and are only checked for presence, so no value reaches a log or an
error message. The structured keys' models live in :mod:`orca_infra.config_types`; what
needs a lookup in AWS (adopted subnets) is checked by :mod:`orca_infra.network`.
"""

from __future__ import annotations

import fnmatch
import json
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import pulumi
from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from orca import tags
from orca.registry_auth import IMAGE_REFERENCE
from orca.settings import NamespaceCaps
from orca_infra.config_types import (
    AdoptedNetwork,
    CreatedNetwork,
    FrozenModel,
    Reservation,
    SharedNetwork,
)

__all__ = [
    "PROJECT",
    "AdoptedNetwork",
    "ConfigError",
    "CreatedNetwork",
    "Reservation",
    "SharedNetwork",
    "StackConfig",
    "load_config",
]

PROJECT = "orca"

# Keys whose values are structured (lists and objects): Pulumi hands them over as JSON.
_STRUCTURED = (
    "budgetAlertEmails",
    "allowedInstanceTypes",
    "network",
    "capacityReservations",
    "burstNamespaces",
    "namespaceShares",
    "namespaceCaps",
)
# Secret keys: read as Outputs, checked only for presence so no value reaches a message.
_SECRET = ("kubeconfig", "kubeletTlsCert", "kubeletTlsKey", "kubeletClientCa")
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
    "budgetWhenRefused",
    "budgetOverLimit",
    "budgetHardCeilingPercent",
)

_DEPARTMENT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
# Cluster names are lowercase DNS labels of at most 40 characters: the name goes into the
# budget's name orca-<cluster>-<department> (AWS Budgets: at most 100 characters, no ':' or
# backslash), the log group /orca/<cluster>/<department>/containers (CloudWatch Logs: letters,
# digits, '_-/.#'), tag values (at most 256 characters) and the Kubernetes provider's
# cluster identifier; a DNS label is safe in all of them.
_CLUSTER = _DEPARTMENT
# AWS Budgets sends each notification to at most 10 e-mail subscribers.
_MAX_BUDGET_EMAILS = 10
# A DNS label (a namespace) and a DNS subdomain (a Secret's name), as Kubernetes checks them.
_DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)
# What an AWS tag value may hold (letters, digits, spaces and _ . : / = + - @), at most 256.
_TAG_VALUE = r"^[\w .:/=+\-@]+$"
_INSTANCE_TYPE = re.compile(r"^(\*|[a-z][a-z0-9-]*\.(\*|[a-z0-9]+))$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy).
_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


class ConfigError(Exception):
    """The stack configuration cannot build an envelope; the message names every bad key."""


def _network_kind(value: Any) -> str:
    if _get(value, "stack") is not None:
        return "share"
    return "adopt" if _get(value, "vpcId", "vpc_id") else "create"


class StackConfig(FrozenModel):
    """Everything one department's stack is built from."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, arbitrary_types_allowed=True
    )

    stack: str
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    department: str
    budget: int = Field(gt=0, description="USD per month")
    # The runtime holds the budget before every launch (its cost ledger); these say how.
    # A namespace's share is a percentage of the budget, so it follows the budget.
    namespace_shares: dict[str, Decimal] = Field(default_factory=dict, alias="namespaceShares")
    # What a namespace may run at once, e.g. {"genomics": {"instances": 10, "gpus": 16}}.
    namespace_caps: dict[str, NamespaceCaps] = Field(default_factory=dict, alias="namespaceCaps")
    budget_when_refused: Literal["wait", "fail"] = Field(default="wait", alias="budgetWhenRefused")
    budget_over_limit: Literal["finish", "stop"] = Field(default="finish", alias="budgetOverLimit")
    budget_hard_ceiling_percent: int = Field(
        default=10, alias="budgetHardCeilingPercent", ge=0, le=1000
    )
    # A tag value on every resource and instance: at most 256 characters of the tag alphabet.
    cost_center: str | None = Field(
        default=None, alias="costCenter", max_length=256, pattern=_TAG_VALUE
    )
    cluster_name: str = Field(alias="clusterName")
    budget_alert_emails: list[str] = Field(
        alias="budgetAlertEmails", min_length=1, max_length=_MAX_BUDGET_EMAILS
    )
    allowed_instance_types: list[str] = Field(
        default_factory=lambda: ["*"], alias="allowedInstanceTypes", min_length=1
    )
    max_instances: int = Field(default=100, alias="maxInstances", ge=1, le=10_000)
    max_gpus: int = Field(default=64, alias="maxGpus", ge=0)
    network: Annotated[
        Annotated[CreatedNetwork, Tag("create")]
        | Annotated[AdoptedNetwork, Tag("adopt")]
        | Annotated[SharedNetwork, Tag("share")],
        Discriminator(_network_kind),
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
        pattern=r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:oidc-provider/[a-z0-9.-]+(:\d+)?(/\S*)?$",
    )
    # The runtime's image, which the instances' bootstrap also runs the agent from.
    runtime_image: str = Field(
        alias="runtimeImage", min_length=1, max_length=512, pattern=IMAGE_REFERENCE
    )
    namespace: str | None = Field(default=None, pattern=_DNS_LABEL)
    # Namespaces whose pods the node runs: the Secret and ConfigMap reads that resolve a pod's
    # env are granted only there. Empty: in every namespace (a cluster-wide read of Secrets).
    burst_namespaces: list[str] = Field(default_factory=list, alias="burstNamespaces")
    log_retention_days: int = Field(default=30, alias="logRetentionDays")
    bundle_expiry_days: int = Field(default=7, alias="bundleExpiryDays", ge=1, le=365)
    # The kubelet API's certificate, key and client CA (PEM, secrets); with them the stack
    # creates the kubernetes.io/tls Secret the runtime mounts, named kubeletTlsSecret.
    kubelet_tls_secret: str | None = Field(default=None, alias="kubeletTlsSecret")
    kubelet_tls_cert: Any = Field(default=None, alias="kubeletTlsCert", exclude=True)
    kubelet_tls_key: Any = Field(default=None, alias="kubeletTlsKey", exclude=True)
    kubelet_client_ca: Any = Field(default=None, alias="kubeletClientCa", exclude=True)
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

    @field_validator("cluster_name")
    @classmethod
    def _cluster_is_a_dns_label(cls, value: str) -> str:
        if not _CLUSTER.match(value):
            raise ValueError(
                "must be 1-40 lowercase letters, digits or '-', starting and ending with a "
                "letter or digit (it goes into the budget's and the log group's names and tags)"
            )
        return value

    @field_validator("burst_namespaces")
    @classmethod
    def _namespaces_are_dns_labels(cls, value: list[str]) -> list[str]:
        bad = [n for n in value if not re.match(_DNS_LABEL, n)]
        if bad or len(set(value)) != len(value):
            raise ValueError(f"expected distinct namespace names (DNS labels), got {value}")
        return value

    @field_validator("namespace_caps")
    @classmethod
    def _caps_are_for_namespaces(cls, value: dict[str, NamespaceCaps]) -> dict[str, NamespaceCaps]:
        bad = [n for n in value if not re.match(_DNS_LABEL, n)]
        if bad:
            raise ValueError(f"not namespace names: {', '.join(bad)}")
        return value

    @field_validator("namespace_shares")
    @classmethod
    def _shares_are_percentages_of_namespaces(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        bad = [n for n in value if not re.match(_DNS_LABEL, n)]
        if bad:
            raise ValueError(f"not namespace names: {', '.join(bad)}")
        out = [f"{n}={p}" for n, p in value.items() if not Decimal(0) < p <= 100]
        if out:
            raise ValueError(
                "shares are percentages of the budget, above 0 and at most 100: " + ", ".join(out)
            )
        return value

    @field_validator("kubelet_tls_secret")
    @classmethod
    def _secret_name_is_a_dns_subdomain(cls, value: str | None) -> str | None:
        if value is not None and not _DNS_SUBDOMAIN.match(value):
            raise ValueError(
                "must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)"
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
    def _provider_is_the_issuers(self) -> StackConfig:
        if self.oidc_provider_arn and self.oidc_issuer_url:
            issuer = self.oidc_issuer_url.removeprefix("https://").rstrip("/")
            provider = self.oidc_provider_arn.split(":oidc-provider/", 1)[1]
            if provider != issuer:
                raise ValueError(
                    f"{PROJECT}:oidcProviderArn: names the provider of {provider}, not of "
                    f"{PROJECT}:oidcIssuerUrl ({issuer}); the role would trust no token"
                )
        return self

    @model_validator(mode="after")
    def _kubelet_tls_is_complete(self) -> StackConfig:
        given = {
            "kubeletTlsCert": self.kubelet_tls_cert,
            "kubeletTlsKey": self.kubelet_tls_key,
            "kubeletClientCa": self.kubelet_client_ca,
        }
        missing = [f"{PROJECT}:{key}" for key, value in given.items() if value is None]
        if missing and len(missing) < len(given):
            raise ValueError(
                f"the kubelet API needs all three of {PROJECT}:kubeletTlsCert, "
                f"{PROJECT}:kubeletTlsKey and {PROJECT}:kubeletClientCa; set "
                f"{', '.join(missing)} with `pulumi config set --secret`"
            )
        if missing and self.kubelet_tls_secret:
            raise ValueError(
                f"{PROJECT}:kubeletTlsSecret: names the Secret the stack creates from "
                f"{PROJECT}:kubeletTlsCert, kubeletTlsKey and kubeletClientCa; set those "
                "(secrets) or unset it"
            )
        return self

    @model_validator(mode="after")
    def _shares_another_stacks_network(self) -> StackConfig:
        if isinstance(self.network, SharedNetwork):
            *qualifier, stack = self.network.stack.split("/")
            if stack == self.stack and qualifier[-1:] in ([], [PROJECT]):
                raise ValueError(
                    f"{PROJECT}:network.stack: names this stack ({self.stack}); name the "
                    "department stack that creates the network, or give this stack a cidr "
                    "and zones"
                )
        return self

    @model_validator(mode="after")
    def _zones_are_in_the_region(self) -> StackConfig:
        zones = getattr(self.network, "zones", None) or []
        foreign = [z for z in zones if z[:-1] != self.region]
        if foreign:
            raise ValueError(
                f"{PROJECT}:network.zones: {', '.join(foreign)} not in aws:region {self.region}"
            )
        for i, reservation in enumerate(self.capacity_reservations):
            if reservation.availability_zone[:-1] != self.region:
                raise ValueError(
                    f"{PROJECT}:capacityReservations[{i}].availabilityZone: "
                    f"{reservation.availability_zone} is not in aws:region {self.region}"
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
    def kubelet_tls(self) -> bool:
        """Whether the kubelet API is served: its certificate, key and client CA are set."""
        return self.kubelet_tls_cert is not None

    @property
    def kubelet_tls_secret_name(self) -> str:
        return self.kubelet_tls_secret or f"{self.node_name}-kubelet-tls"

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
    for key in _SECRET:
        # Pulumi.yaml gives the optional secrets an empty default: the same as unset.
        if pulumi.runtime.get_config(f"{PROJECT}:{key}"):
            raw[key] = config.get_secret(key)
    raw.setdefault("kubeconfig", None)

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
    location = [part for part in location if part not in ("create", "adopt", "share")]
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
    if error["type"] != "missing" and isinstance(given, str | int | float) and head not in _SECRET:
        shown = f" (got {given!r})"
    return f"  {key}: {message}{shown}"


def _get(value: Any, *names: str) -> Any:
    if isinstance(value, dict):
        return next((value[n] for n in names if n in value), None)
    return next((getattr(value, n) for n in names if hasattr(value, n)), None)


_ALIASES = {
    name: field.alias for name, field in StackConfig.model_fields.items() if field.alias is not None
}
