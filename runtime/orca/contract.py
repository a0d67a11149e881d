"""The pod contract: what a researcher writes on a pod, checked and resolved.

:func:`resolve_launch` turns a pod's annotations and spec into a
:class:`LaunchSpec` or raises :class:`ContractError` carrying one
:class:`Rejection` per problem, each naming the annotation, the value given and
what is allowed, so the pod's Events tell the researcher exactly what to fix.
Spec fields the agent cannot honour (:mod:`orca.spec_support`) are rejected here too.
Nothing here talks to AWS or Kubernetes.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import durationpy

from orca import spec_support, tags
from orca.aws.model import OPEN_RESERVATIONS, Market, ReservationChoice
from orca.catalog import Catalog, InstanceType
from orca.rejections import ContractError as ContractError  # re-exported
from orca.rejections import Rejection as Rejection  # re-exported
from orca.resources import InvalidResourceQuantity, effective_requests, fits
from orca.settings import Settings
from orca.tags import PREFIX

INSTANCE_TYPE = PREFIX + "instance-type"
WORKLOAD_TEMPLATE = PREFIX + "workload-template"
LAUNCH_TYPE = PREFIX + "launch-type"
MAX_SPOT_PRICE = PREFIX + "max-spot-price"
CAPACITY_RESERVATION = PREFIX + "capacity-reservation"
FALLBACK_INSTANCE_TYPES = PREFIX + "fallback-instance-types"
AVAILABILITY_ZONE = PREFIX + "availability-zone"
MAX_LIFETIME = PREFIX + "max-lifetime"
ROOT_VOLUME_GIB = PREFIX + "root-volume-gib"

CONTRACT_ANNOTATIONS = (
    INSTANCE_TYPE,
    WORKLOAD_TEMPLATE,
    LAUNCH_TYPE,
    MAX_SPOT_PRICE,
    CAPACITY_RESERVATION,
    FALLBACK_INSTANCE_TYPES,
    AVAILABILITY_ZONE,
    MAX_LIFETIME,
    ROOT_VOLUME_GIB,
)
# What ORCA itself writes on the pod under the same prefix.
BOOKKEEPING_ANNOTATIONS = (
    tags.LAUNCH_ATTEMPT_ANNOTATION,
    tags.CLIENT_TOKEN_ANNOTATION,
    tags.INSTANCE_ID_ANNOTATION,
    tags.REPORT_SEQUENCE_ANNOTATION,
    tags.DEADLINE_ANNOTATION,
    *tags.COST_ANNOTATIONS,
)

LAUNCH_TYPES = ("on-demand", "spot", "capacity-block")
# gp3 volumes hold 1 GiB to 16 TiB; the AMIs need 30 GiB for their own root.
ROOT_VOLUME_RANGE = (30, 16384)
# Capacity reservation ids are cr- and 17 hex digits; reservations made before 2018 have 8.
RESERVATION_ID = re.compile(r"^cr-([0-9a-f]{17}|[0-9a-f]{8})$")
# Each fallback is tried in every zone before the next; more would keep a pod waiting long.
MAX_FALLBACK_INSTANCE_TYPES = 4
RESERVATION_CHOICES = (
    "open (the default: matching open reservations are used), none (never use a "
    "reservation), group (only the department's reservation group) or a reservation id "
    "(cr- and 17 hex digits)"
)


@dataclass(frozen=True)
class Fallback:
    """An instance type to launch when the ones before it have no capacity in any zone."""

    instance_type: InstanceType
    launch_template_kind: str


@dataclass(frozen=True)
class LaunchSpec:
    """Exactly what to launch for one pod.

    ``instance_type`` is the pod's first choice; ``fallbacks`` (the annotation
    ``orca.research/fallback-instance-types``) are launched in their order when every
    zone has refused the types before them for lack of capacity. :meth:`for_attempt`
    gives the spec of one launch attempt.
    """

    instance_type: InstanceType
    market: Market
    max_spot_price: Decimal | None
    availability_zone: str | None
    lifetime: timedelta
    lifetime_source: str
    root_volume_gib: int | None
    workload_template: str | None
    launch_template_kind: str
    reservation: ReservationChoice = OPEN_RESERVATIONS
    fallbacks: tuple[Fallback, ...] = ()

    @property
    def choices(self) -> int:
        """How many instance types the pod may launch: its own and its fallbacks."""
        return 1 + len(self.fallbacks)

    def choice_of(self, attempt: int, zones: int) -> int:
        """Which type (0: the pod's own) launch attempt ``attempt`` (from 1) tries.

        Attempts walk every one of ``zones`` zones with one type before the next type,
        and start again from the pod's own type after the last fallback.
        """
        return ((attempt - 1) // max(zones, 1)) % self.choices

    def for_attempt(self, attempt: int, zones: int) -> LaunchSpec:
        """The spec launch attempt ``attempt`` launches: the type its turn falls on."""
        choice = self.choice_of(attempt, zones)
        if choice == 0:
            return self
        fallback = self.fallbacks[choice - 1]
        return dataclasses.replace(
            self,
            instance_type=fallback.instance_type,
            launch_template_kind=fallback.launch_template_kind,
        )

    @property
    def instance_type_names(self) -> tuple[str, ...]:
        return (self.instance_type.name, *(f.instance_type.name for f in self.fallbacks))


def _listing(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _human_duration(value: timedelta) -> str:
    return durationpy.to_str(value)


class _Resolver:
    """Checks one pod; collects every rejection instead of stopping at the first."""

    def __init__(
        self,
        pod: Mapping[str, Any],
        settings: Settings,
        catalog: Catalog,
        zones: Sequence[str],
    ) -> None:
        metadata = pod.get("metadata") or {}
        # Surrounding whitespace (a stray space after a value in YAML) means nothing here.
        self.annotations: Mapping[str, str] = {
            key: value.strip() if isinstance(value, str) else value
            for key, value in (metadata.get("annotations") or {}).items()
        }
        self.spec: Mapping[str, Any] = pod.get("spec") or {}
        self.settings = settings
        self.catalog = catalog
        self.zones = list(zones)
        self.rejections: list[Rejection] = []

    def reject(self, annotation: str, problem: str, allowed: str) -> None:
        value = self.annotations.get(annotation)
        self.rejections.append(Rejection(annotation, value, problem, allowed))

    def resolve(self) -> LaunchSpec:
        self._unknown_annotations()
        template_name, template = self._workload_template()
        instance_type = self._instance_type(template)
        market = self._market(template)
        price = self._max_spot_price(market, instance_type, template)
        zone = self._availability_zone()
        lifetime, lifetime_source = self._lifetime()
        root_volume = self._root_volume()
        reservation = self._reservation(market)
        fallbacks = self._fallbacks(instance_type, reservation)
        self.rejections += spec_support.refusals(self.spec, self.settings)
        kind = self._launch_template_kind(instance_type)
        if self.rejections:
            raise ContractError(self.rejections)
        assert instance_type is not None and kind is not None
        return LaunchSpec(
            instance_type=instance_type,
            market=market,
            max_spot_price=price,
            availability_zone=zone,
            lifetime=lifetime,
            lifetime_source=lifetime_source,
            root_volume_gib=root_volume,
            workload_template=template_name,
            launch_template_kind=kind,
            reservation=reservation,
            fallbacks=fallbacks,
        )

    def _unknown_annotations(self) -> None:
        """A misspelt ORCA annotation is named, not silently ignored."""
        known = CONTRACT_ANNOTATIONS + BOOKKEEPING_ANNOTATIONS
        for key in self.annotations:
            if key.startswith(PREFIX) and key not in known:
                hints = difflib.get_close_matches(key, CONTRACT_ANNOTATIONS, n=1)
                hint = f" (did you mean {hints[0]}?)" if hints else ""
                self.reject(
                    key, f"not an ORCA annotation{hint}", _listing(CONTRACT_ANNOTATIONS, limit=9)
                )

    def _workload_template(self) -> tuple[str | None, Any]:
        name = self.annotations.get(WORKLOAD_TEMPLATE)
        if name is None:
            return None, None
        templates = self.settings.workload_templates
        if name not in templates:
            allowed = _listing(sorted(templates)) if templates else "none (this department "
            if not templates:
                allowed += "defines no workload templates; name an instance type instead)"
            self.reject(WORKLOAD_TEMPLATE, "no such workload template", allowed)
            return name, None
        return name, templates[name]

    def _instance_type(self, template: Any) -> InstanceType | None:
        name = self.annotations.get(INSTANCE_TYPE) or (template.instance_type if template else None)
        if not name:
            if WORKLOAD_TEMPLATE not in self.annotations:
                self.reject(
                    INSTANCE_TYPE,
                    "an ORCA pod must name the EC2 instance type to launch",
                    "an exact EC2 type such as g6e.xlarge or p5.48xlarge, or "
                    f"{WORKLOAD_TEMPLATE} naming one of the department's templates",
                )
            return None

        instance_type = self.catalog.get(name)
        if instance_type is None:
            # Suggest what the department allows, when it allows any close match.
            candidates = self.catalog.close_matches(name, n=10)
            allowed_here = self.settings.allowed_instance_types
            hints = [c for c in candidates if Catalog.matches_pattern(c, allowed_here)][:3]
            hints = hints or candidates[:3]
            hint = f" (did you mean {' or '.join(hints)}?)" if hints else ""
            self.reject(
                INSTANCE_TYPE,
                f"no such EC2 instance type{hint}",
                "exact EC2 instance type names, e.g. p5.48xlarge, p6-b200.48xlarge, g6e.xlarge",
            )
            return None

        allowed = self.settings.allowed_instance_types
        if not Catalog.matches_pattern(name, allowed):
            self.reject(
                INSTANCE_TYPE,
                f"the {self.settings.department} department does not allow this type",
                _listing(allowed),
            )
            return None

        try:
            requests = effective_requests(dict(self.spec))
        except InvalidResourceQuantity as e:
            self.reject(
                INSTANCE_TYPE,
                f"the pod's resources cannot be read: {e}",
                "valid Kubernetes quantities such as 500m, 8, 16Gi",
            )
            return instance_type
        shortfalls = fits(requests, instance_type)
        if shortfalls:
            self.reject(
                INSTANCE_TYPE,
                "the pod does not fit: " + "; ".join(shortfalls),
                "a larger type, or smaller requests",
            )
        return instance_type

    def _market(self, template: Any) -> Market:
        value = self.annotations.get(LAUNCH_TYPE)
        if value is None:
            return template.launch_type if template else "on-demand"
        if value not in LAUNCH_TYPES:
            self.reject(LAUNCH_TYPE, "unknown launch type", ", ".join(LAUNCH_TYPES))
            return "on-demand"
        return value  # type: ignore[return-value]

    def _max_spot_price(
        self, market: Market, instance_type: InstanceType | None, template: Any
    ) -> Decimal | None:
        raw = self.annotations.get(MAX_SPOT_PRICE)
        if raw is None:
            return template.max_spot_price if template and market == "spot" else None
        if market != "spot":
            self.reject(
                MAX_SPOT_PRICE,
                "a maximum spot price applies only to spot launches",
                f"remove it, or set {LAUNCH_TYPE} to spot",
            )
            return None

        on_demand = instance_type.on_demand_usd_per_hour if instance_type else None
        ceiling = f"up to the on-demand price (${on_demand}/h)" if on_demand else "positive"
        allowed = f"a price in USD per hour, {ceiling}; unset means the on-demand price"
        try:
            price = Decimal(raw)
        except InvalidOperation:
            self.reject(MAX_SPOT_PRICE, "not a number", allowed)
            return None
        if not price.is_finite() or price <= 0:
            self.reject(MAX_SPOT_PRICE, "must be a positive price", allowed)
            return None
        if on_demand is not None and price > on_demand:
            assert instance_type is not None
            self.reject(
                MAX_SPOT_PRICE,
                f"above the on-demand price of {instance_type.name}, so spot would only cost more",
                allowed,
            )
            return None
        return price

    def _availability_zone(self) -> str | None:
        zone = self.annotations.get(AVAILABILITY_ZONE)
        if zone is not None and zone not in self.zones:
            self.reject(
                AVAILABILITY_ZONE,
                "the department has no burst subnet in that zone",
                _listing(sorted(self.zones)),
            )
            return None
        return zone

    def _lifetime(self) -> tuple[timedelta, str]:
        ceiling = self.settings.max_lifetime_ceiling
        allowed = (
            "a duration such as 90m, 6h or 1h30m, at most "
            f"{_human_duration(ceiling)} in the {self.settings.department} department"
        )
        bounds: list[tuple[timedelta, str]] = []

        raw = self.annotations.get(MAX_LIFETIME)
        if raw is not None:
            try:
                lifetime = durationpy.from_str(raw)
            except (durationpy.DurationError, ValueError):
                self.reject(MAX_LIFETIME, "not a duration", allowed)
            else:
                if lifetime <= timedelta(0):
                    self.reject(MAX_LIFETIME, "must be longer than zero", allowed)
                elif lifetime > ceiling:
                    self.reject(MAX_LIFETIME, "longer than the department allows", allowed)
                else:
                    bounds.append((lifetime, MAX_LIFETIME))

        deadline = self.spec.get("activeDeadlineSeconds")
        if deadline:
            bounds.append((timedelta(seconds=int(deadline)), "activeDeadlineSeconds"))
            # The ceiling bounds every pod, as the budget holds: a longer deadline is a
            # limit the pod stays within, so the ceiling, shorter, stops it first.
            bounds.append(
                (
                    ceiling,
                    f"the department's ceiling of {_human_duration(ceiling)}, shorter than "
                    "activeDeadlineSeconds",
                )
            )
        if not bounds:
            return self.settings.default_max_lifetime, "the department's default"
        return min(bounds, key=lambda bound: bound[0])

    def _root_volume(self) -> int | None:
        raw = self.annotations.get(ROOT_VOLUME_GIB)
        if raw is None:
            return None
        low, high = ROOT_VOLUME_RANGE
        allowed = f"a whole number of GiB from {low} to {high}"
        if not raw.strip().isdigit():
            self.reject(ROOT_VOLUME_GIB, "not a whole number", allowed)
            return None
        size = int(raw)
        if not low <= size <= high:
            self.reject(ROOT_VOLUME_GIB, "out of range", allowed)
            return None
        return size

    def _reservation(self, market: Market) -> ReservationChoice:
        value = self.annotations.get(CAPACITY_RESERVATION)
        if market == "capacity-block" and not (value and RESERVATION_ID.match(value)):
            self.reject(
                CAPACITY_RESERVATION,
                "a capacity-block launch goes into one capacity block, named by its reservation id",
                f"the block's id (cr- and 17 hex digits) with {AVAILABILITY_ZONE} set to its zone",
            )
            return OPEN_RESERVATIONS
        if value is None or value == "open":
            return OPEN_RESERVATIONS
        if value == "none":
            return ReservationChoice("none")
        if value != "group" and not RESERVATION_ID.match(value):
            self.reject(
                CAPACITY_RESERVATION, "not a capacity reservation choice", RESERVATION_CHOICES
            )
            return OPEN_RESERVATIONS

        # Targets: the group or one reservation, for on-demand launches; a capacity block
        # is a reservation of its own market.
        ok = True
        if market == "spot":
            self.reject(
                CAPACITY_RESERVATION,
                f"On-Demand Capacity Reservations serve only on-demand launches, never {market}",
                f"open or none with {LAUNCH_TYPE} {market}; or {LAUNCH_TYPE} on-demand to use "
                "a reservation",
            )
            ok = False
        if value == "group":
            group_arn = self.settings.capacity_reservation_group_arn
            if group_arn is None:
                self.reject(
                    CAPACITY_RESERVATION,
                    f"the {self.settings.department} department's stack configures no capacity "
                    "reservations, so it has no reservation group",
                    "open or none (the department's computing staff can add reservations "
                    "to its stack)",
                )
                return OPEN_RESERVATIONS
            return ReservationChoice.group(group_arn) if ok else OPEN_RESERVATIONS
        if AVAILABILITY_ZONE not in self.annotations:
            self.reject(
                CAPACITY_RESERVATION,
                "capacity reservations are zonal, and the pod names no zone: pin the "
                f"reservation's zone with {AVAILABILITY_ZONE}",
                f"a reservation id together with {AVAILABILITY_ZONE} set to the reservation's zone",
            )
            ok = False
        return ReservationChoice.reservation(value) if ok else OPEN_RESERVATIONS

    def _fallbacks(
        self, first: InstanceType | None, reservation: ReservationChoice
    ) -> tuple[Fallback, ...]:
        raw = self.annotations.get(FALLBACK_INSTANCE_TYPES)
        if raw is None:
            return ()
        allowed = (
            f"a comma list of up to {MAX_FALLBACK_INSTANCE_TYPES} exact EC2 instance types, "
            f"other than {INSTANCE_TYPE} and each once, that the department allows and the "
            "pod fits, e.g. p5e.48xlarge,p4d.24xlarge"
        )
        problems: list[str] = []
        spaced = next((n.strip() for n in raw.split(",") if len(n.split()) > 1), None)
        if spaced:
            problems.append(f"separate the types with commas, not spaces ({spaced!r})")
        names = raw.replace(",", " ").split()
        if not names:
            problems.append("names no instance type")
        if len(names) > MAX_FALLBACK_INSTANCE_TYPES:
            problems.append(f"names {len(names)} types")
        if first is not None and first.name in names:
            problems.append(f"names {first.name}, the pod's first choice")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            problems.append(f"names {', '.join(repeated)} more than once")
        if reservation.reservation_id is not None:
            problems.append(
                f"a targeted capacity reservation ({reservation.reservation_id}) holds one "
                "instance type, so the pod cannot fall back to another"
            )
        fallbacks: list[Fallback] = []
        for name in dict.fromkeys(names):
            fallback = self._fallback(name)
            if isinstance(fallback, str):
                problems.append(f"{name}: {fallback}")
            else:
                fallbacks.append(fallback)
        if problems:
            self.reject(FALLBACK_INSTANCE_TYPES, "; ".join(problems), allowed)
            return ()
        return tuple(fallbacks)

    def _fallback(self, name: str) -> Fallback | str:
        """The fallback ``name``, or why it cannot be launched for this pod."""
        instance_type = self.catalog.get(name)
        if instance_type is None:
            hints = self.catalog.close_matches(name, n=1)
            return "no such EC2 instance type" + (f" (did you mean {hints[0]}?)" if hints else "")
        if not Catalog.matches_pattern(name, self.settings.allowed_instance_types):
            return f"the {self.settings.department} department does not allow this type"
        kind = launch_template_kind(instance_type)
        if kind not in self.settings.launch_templates:
            return f"the department has no launch template for {kind} instances"
        try:
            shortfalls = fits(effective_requests(dict(self.spec)), instance_type)
        except InvalidResourceQuantity:
            shortfalls = []  # named once, against the first choice
        if shortfalls:
            return "the pod does not fit: " + "; ".join(shortfalls)
        return Fallback(instance_type, kind)

    def _launch_template_kind(self, instance_type: InstanceType | None) -> str | None:
        if instance_type is None:
            return None
        kind = launch_template_kind(instance_type)
        if kind not in self.settings.launch_templates:
            self.reject(
                INSTANCE_TYPE,
                f"the department has no launch template for {kind} instances",
                "types whose kind has a launch template: "
                + ", ".join(sorted(self.settings.launch_templates)),
            )
            return None
        return kind


def launch_template_kind(instance_type: InstanceType) -> str:
    """The department launch template an instance type boots from (its AMI's kind)."""
    if instance_type.architecture == "arm64":
        return "arm64"
    if instance_type.gpus or instance_type.neuron_devices:
        return "x86_64-gpu"
    return "x86_64"


def resolve_launch(
    pod: Mapping[str, Any],
    settings: Settings,
    catalog: Catalog,
    zones: Sequence[str],
) -> LaunchSpec:
    """What to launch for ``pod``, or :class:`ContractError` listing what is wrong.

    ``pod`` is the pod object as the API serves it (camelCase keys); ``zones``
    are the availability zones of the department's burst subnets.
    """
    return _Resolver(pod, settings, catalog, zones).resolve()
