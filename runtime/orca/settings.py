"""The runtime's settings: one typed tree, read once at start.

Values come from ``ORCA_*`` environment variables (nested keys joined with
``__``, lists and maps as JSON) and, optionally, a YAML or JSON file named by
``ORCA_SETTINGS_FILE``; the environment wins over the file. The Pulumi program
generates exactly these keys from its stack outputs, so this model is the one
source of truth for what the runtime accepts.

A bad value stops the runtime at start: :func:`load_settings` raises
:class:`SettingsError` naming each key (as the environment variable a person
would set) and the reason.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from orca.registry_auth import IMAGE_REFERENCE

ENV_PREFIX = "ORCA_"
SETTINGS_FILE_VARIABLE = "ORCA_SETTINGS_FILE"

# A department names the node (orca-<department>), tags and AWS resources, so it
# must be a DNS label short enough to leave room for prefixes.
_DEPARTMENT = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_SECURITY_GROUP = re.compile(r"^sg-[0-9a-f]{8,17}$")
_LAUNCH_TEMPLATE = re.compile(r"^lt-[0-9a-f]{8,17}$")
LAUNCH_TEMPLATE_KINDS = ("x86_64-gpu", "x86_64", "arm64")
# A Resource Groups group ARN, arn:<partition>:resource-groups:<region>:<account>:group/<name>;
# a group name is 1-300 letters, digits, '.', '_' or '-'.
_RESOURCE_GROUP_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:resource-groups:(?P<region>[a-z]{2}(-[a-z]+)+-\d):\d{12}:"
    r"group/[A-Za-z0-9._-]{1,300}$"
)
# The shortest month: a pod admitted on a month's last day must end within the next.
MAX_LIFETIME_CEILING = timedelta(days=28)


class NodeLimits(BaseModel):
    """What the virtual node advertises: the department's ceiling on concurrent use."""

    max_pods: int = Field(default=100, ge=1, le=10_000)
    cpu: int = Field(default=4096, ge=1, description="vCPUs across all burst instances")
    memory_gib: int = Field(default=32768, ge=1)
    gpus: int = Field(default=64, ge=0, description="nvidia.com/gpu across all instances")
    neuron_devices: int = Field(default=0, ge=0, description="aws.amazon.com/neuron")


class WorkloadTemplate(BaseModel):
    """A named launch choice a researcher can ask for in one word."""

    instance_type: str
    launch_type: Literal["on-demand", "spot"] = "on-demand"
    max_spot_price: Decimal | None = Field(default=None, gt=0)


# DynamoDB table names: 3-255 letters, digits, '_', '-' or '.'.
_TABLE_NAME = r"^[A-Za-z0-9_.-]{3,255}$"
_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class NamespaceCaps(BaseModel):
    """How much a namespace may run at once: instances and GPUs, each optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: int | None = Field(default=None, ge=0)
    gpus: int | None = Field(default=None, ge=0)


class BudgetSettings(BaseModel):
    """The department's monthly budget, held by the cost ledger before every launch.

    ``monthly_usd`` is the stack's ``budget``. ``namespace_shares`` gives a namespace a
    share of it in percent (so a share follows the budget when the budget changes); a
    namespace without one is limited by the department's budget alone. Shares may add up
    to more than 100: the department's limit still holds for all of them together.
    ``when_refused`` is what happens to a pod whose bound cost does not fit: ``wait``
    (Pending, tried again every ``retry_seconds`` and at the month's reset) or ``fail``.
    ``over_limit`` is what happens to running pods once the month's spend passes the
    budget: ``finish`` lets them run to their end (new launches stop either way); ``stop``
    fails them and ends their instances once spend reaches ``hard_ceiling_percent`` over
    the budget.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ledger_table: str = Field(pattern=_TABLE_NAME)
    monthly_usd: Decimal = Field(gt=0, max_digits=14, decimal_places=2)
    namespace_shares: dict[str, Decimal] = Field(default_factory=dict)
    # Caps on what a namespace runs (or is about to) at once; a pod past one waits.
    namespace_caps: dict[str, NamespaceCaps] = Field(default_factory=dict)
    when_refused: Literal["wait", "fail"] = "wait"
    over_limit: Literal["finish", "stop"] = "finish"
    hard_ceiling_percent: Decimal = Field(default=Decimal(10), ge=0, le=1000)
    retry_seconds: float = Field(default=300.0, ge=5)
    # How often the month's spend is read from the ledger for metrics and the over-limit
    # action: a Query of the month's partition each time.
    check_seconds: float = Field(default=60.0, ge=1)

    @field_validator("namespace_caps")
    @classmethod
    def _caps_are_for_namespaces(cls, value: dict[str, NamespaceCaps]) -> dict[str, NamespaceCaps]:
        bad_names = [n for n in value if not _NAMESPACE.match(n)]
        if bad_names:
            raise ValueError(f"not namespace names: {', '.join(bad_names)}")
        return value

    @field_validator("namespace_shares")
    @classmethod
    def _shares_are_percentages_of_namespaces(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        bad_names = [n for n in value if not _NAMESPACE.match(n)]
        if bad_names:
            raise ValueError(f"not namespace names: {', '.join(bad_names)}")
        bad = [f"{n}={p}" for n, p in value.items() if not Decimal(0) < p <= 100]
        if bad:
            raise ValueError(
                f"shares are percentages of the monthly budget, above 0 and at most 100: "
                f"{', '.join(bad)}"
            )
        return value

    def namespace_limit_usd(self, namespace: str) -> Decimal | None:
        """The namespace's share in USD, or None when only the department's limit applies."""
        share = self.namespace_shares.get(namespace)
        if share is None:
            return None
        return (self.monthly_usd * share / 100).quantize(Decimal("0.01"))

    @property
    def hard_ceiling_usd(self) -> Decimal:
        return (self.monthly_usd * (100 + self.hard_ceiling_percent) / 100).quantize(
            Decimal("0.01")
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    department: str
    cluster_name: str = Field(min_length=1, max_length=100)
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    cost_center: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    subnet_ids: list[str] = Field(min_length=1)
    # The burst instances' security groups; the launch templates name none, since a
    # request's network interface (which keeps instances off public IPs) replaces them.
    security_group_ids: list[str] = Field(min_length=1)
    launch_templates: dict[str, str] = Field(min_length=1)
    status_queue_url: str = Field(pattern=r"^https?://")
    bundle_bucket: str = Field(min_length=3, max_length=63)
    log_group: str = Field(min_length=1)
    # The image that runs the agent on AMIs without `orca` (the ECS-optimized AMIs ship
    # Docker and Python 3.9 only); the Pulumi program sets the runtime's own image.
    agent_image: str | None = Field(default=None, max_length=512, pattern=IMAGE_REFERENCE)

    # The department's capacity reservation group (a resource group of type
    # AWS::EC2::CapacityReservationPool), which pods target with capacity-reservation: group;
    # the Pulumi program sets it when the stack has reservations.
    capacity_reservation_group_arn: str | None = None

    # The monthly budget and the cost ledger that holds it (ORCA_BUDGET__LEDGER_TABLE,
    # ORCA_BUDGET__MONTHLY_USD, ...). The Pulumi program always sets it; without it no
    # launch is checked against a budget, which the runtime logs as a warning at start.
    budget: BudgetSettings | None = None

    # Privileged containers and capabilities beyond Docker's defaults reach the instance's
    # kernel and devices; a department whose pods need them opts in (default: refused).
    allow_privileged: bool = False

    allowed_instance_types: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    workload_templates: dict[str, WorkloadTemplate] = Field(default_factory=dict)
    limits: NodeLimits = Field(default_factory=NodeLimits)
    default_max_lifetime: timedelta = timedelta(hours=24)
    max_lifetime_ceiling: timedelta = timedelta(days=14)

    kubeconfig: Path | None = None
    node_internal_ip: str = "127.0.0.1"
    kubelet_port: int = Field(default=10250, ge=1, le=65535)
    # Plain HTTP for probes and Prometheus: /healthz, /readyz, /metrics (0: any free port).
    health_port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=8, ge=1, le=64)
    instance_resync_seconds: float = Field(default=5.0, gt=0)
    gc_min_age_seconds: float = Field(default=120.0, ge=0)
    # How often the garbage collector reads the ledger's open holds (one Query a month).
    gc_holds_seconds: float = Field(default=60.0, gt=0)
    # An instance whose agent has not reported this long after launch is ended: a boot
    # that failed must not bill until the pod's deadline.
    agent_report_timeout_seconds: float = Field(default=600.0, gt=0)
    # The dead-man switch: an agent that has not seen this runtime's heartbeat for this long
    # stops its pod and powers off. The runtime writes it every lease / 6. A lease shorter
    # than a runtime restart (a rolling update) would end every burst pod with it.
    runtime_lease: timedelta = Field(
        default=timedelta(minutes=15), ge=timedelta(minutes=5), le=timedelta(days=1)
    )
    # How long a pod waits after every zone reported no capacity before ORCA tries again.
    capacity_retry_seconds: float = Field(default=60.0, gt=0)
    # SQS long polling: one receive waits up to this long for agent reports (SQS allows 20).
    report_poll_seconds: int = Field(default=20, ge=1, le=20)
    lease_duration_seconds: int = Field(default=40, ge=10)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # The kubelet API (kubectl logs) serves HTTPS with this certificate; without one it is off.
    kubelet_tls_cert_file: FilePath | None = None
    kubelet_tls_key_file: FilePath | None = None
    # The CA that signs the API server's kubelet client certificate (kubelet --client-ca-file).
    kubelet_client_ca_file: FilePath | None = None
    # Client certificate identities (CN, or an O group) allowed to read logs.
    kubelet_allowed_clients: list[str] = Field(
        default_factory=lambda: ["kube-apiserver-kubelet-client", "system:kube-apiserver"],
        min_length=1,
    )
    # For local use only: serve any client, with or without a certificate.
    kubelet_insecure_allow_any_client: bool = False

    @field_validator("department")
    @classmethod
    def _department_is_a_dns_label(cls, value: str) -> str:
        if not _DEPARTMENT.match(value):
            raise ValueError(
                "must be 1-40 lowercase letters, digits or '-', starting and ending with a "
                "letter or digit (it names the node orca-<department> and AWS resources)"
            )
        return value

    @field_validator("max_lifetime_ceiling")
    @classmethod
    def _ceiling_fits_the_budget_months(cls, value: timedelta) -> timedelta:
        # A hold counts in its own month and is looked for two months back at most; a pod
        # that could run on past that would escape the budget.
        if value > MAX_LIFETIME_CEILING:
            days = MAX_LIFETIME_CEILING.days
            raise ValueError(
                f"must be at most {days} days (P{days}D): the budget looks for a pod's hold "
                "two months back at most"
            )
        return value

    @field_validator("subnet_ids")
    @classmethod
    def _subnets_look_like_subnets(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not _SUBNET.match(s)]
        if bad:
            raise ValueError(f"not subnet ids: {', '.join(bad)} (expected subnet-0123abcd...)")
        return value

    @field_validator("security_group_ids")
    @classmethod
    def _groups_look_like_groups(cls, value: list[str]) -> list[str]:
        bad = [g for g in value if not _SECURITY_GROUP.match(g)]
        if bad:
            raise ValueError(f"not security group ids: {', '.join(bad)} (expected sg-0123abcd...)")
        return value

    @field_validator("launch_templates")
    @classmethod
    def _launch_templates_by_kind(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(LAUNCH_TEMPLATE_KINDS))
        if unknown:
            allowed = ", ".join(LAUNCH_TEMPLATE_KINDS)
            raise ValueError(f"unknown kind(s) {', '.join(unknown)}; allowed: {allowed}")
        bad = [v for v in value.values() if not _LAUNCH_TEMPLATE.match(v)]
        if bad:
            raise ValueError(f"not launch template ids: {', '.join(bad)} (expected lt-0123...)")
        return value

    @field_validator("capacity_reservation_group_arn")
    @classmethod
    def _group_arn_is_a_resource_group_in_the_region(
        cls, value: str | None, info: ValidationInfo
    ) -> str | None:
        if value is None:
            return None
        match = _RESOURCE_GROUP_ARN.match(value)
        if not match:
            raise ValueError(
                "not an AWS Resource Groups group ARN (expected "
                "arn:aws:resource-groups:<region>:<account>:group/<name>)"
            )
        # Reservations and their groups are regional; a launch can only target the region's.
        region = info.data.get("region")
        if region and match["region"] != region:
            raise ValueError(f"the group is in {match['region']}, not in the runtime's {region}")
        return value

    @model_validator(mode="after")
    def _lifetimes_are_ordered(self) -> Settings:
        if self.default_max_lifetime <= timedelta(0):
            raise ValueError("default_max_lifetime must be positive")
        if self.default_max_lifetime > self.max_lifetime_ceiling:
            raise ValueError("default_max_lifetime is longer than max_lifetime_ceiling")
        return self

    @model_validator(mode="after")
    def _kubelet_tls_is_complete(self) -> Settings:
        if (self.kubelet_tls_cert_file is None) != (self.kubelet_tls_key_file is None):
            raise ValueError(
                "kubelet_tls_cert_file and kubelet_tls_key_file go together; set both or neither"
            )
        if (
            self.kubelet_tls_cert_file is not None
            and self.kubelet_client_ca_file is None
            and not self.kubelet_insecure_allow_any_client
        ):
            raise ValueError(
                "the kubelet API needs kubelet_client_ca_file (the CA of the API server's "
                "kubelet client certificate) to authenticate callers; only for local use, "
                "set kubelet_insecure_allow_any_client=true instead"
            )
        return self

    @property
    def node_name(self) -> str:
        return f"orca-{self.department}"

    @property
    def listen_address(self) -> str:
        """Where the runtime's servers listen: a loopback node address is a local setup,
        served on loopback only; otherwise every interface of the runtime's pod."""
        try:
            local = ipaddress.ip_address(self.node_internal_ip).is_loopback
        except ValueError:
            local = False
        return self.node_internal_ip if local else "0.0.0.0"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        settings_file = os.environ.get(SETTINGS_FILE_VARIABLE)
        if settings_file:
            # YAML is a superset of JSON, so one source reads both kinds of file.
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=settings_file))
        return tuple(sources)


class SettingsError(Exception):
    """The settings cannot start a runtime; the message names every bad key."""


def _shown(given: Any) -> str:
    """The bad value as the user wrote it: durations as ISO 8601 (``PT1M``), not Python."""
    return repr(to_jsonable_python(given)) if isinstance(given, timedelta) else repr(given)


def _variable_name(location: tuple[Any, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in location if part != "__root__")


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings once; raise :class:`SettingsError` if any is bad."""
    settings_file = os.environ.get(SETTINGS_FILE_VARIABLE)
    if settings_file and not Path(settings_file).is_file():
        raise SettingsError(f"{SETTINGS_FILE_VARIABLE}={settings_file}: no such file")
    try:
        return Settings(**overrides)
    except ValidationError as e:
        problems = []
        for error in e.errors():
            key = _variable_name(error["loc"]) if error["loc"] else "(settings)"
            given = error.get("input")
            shown = ""
            if error["type"] != "missing" and not isinstance(given, dict):
                shown = f" (got {_shown(given)})"
            problems.append(f"  {key}: {error['msg']}{shown}")
        if any(error["type"] == "missing" for error in e.errors()):
            # The envelope's stack writes every setting the runtime needs into its deployment.
            problems.append(
                "The department's stack has every required setting: `pulumi stack output "
                "runtimeSettings` in its Pulumi project."
            )
        raise SettingsError(
            "the ORCA runtime cannot start; fix these settings (environment variables, or keys "
            f"in {SETTINGS_FILE_VARIABLE}):\n" + "\n".join(problems)
        ) from e
