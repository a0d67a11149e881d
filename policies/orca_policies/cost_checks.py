"""The checks behind the cost pack's policies (declared in :mod:`orca_policies.cost`).

Prices come from the runtime's own instance catalog (:meth:`orca.catalog.Catalog.shipped`,
us-east-1 Linux on-demand list prices), so the pack and the runtime agree on what an hour
of an instance type costs. Committed spend is compared with the budget over the months the
commitment runs: the monthly budget times those months (at least one), times the share the
institution allows.

A capacity block is bought by offering id (``capacityBlockOfferingId``); its instance type,
count and dates are outputs AWS fills in from the offering, so they are known only to a
stack check that sees the stack after the purchase (``AnalyzeStack`` of an update), never at
preview. The catalog has no capacity-block prices: a block is counted at the on-demand list
price of its type, for its whole length (it is paid up front).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pulumi_policy import ReportViolation

from orca import tags as orca_tags
from orca.catalog import Catalog, matches_pattern
from orca_policies import types
from orca_policies.values import (
    UNKNOWN,
    Report,
    Resource,
    dig,
    has_unknown,
    is_unknown,
    items,
    now,
    number,
    provider_default_tags,
)

CATALOG = Catalog.shipped()
HOURS_PER_MONTH = Decimal(730)
# What one month of a budget's period is, to compare a commitment with a monthly figure.
MONTHS_PER_PERIOD = {"MONTHLY": 1, "QUARTERLY": 3, "ANNUALLY": 12}

ALLOWED_TYPES_SCHEMA = {
    "type": "array",
    "items": {"type": "string"},
    "default": ["*"],
    "description": "Instance types the department may use: exact types or patterns (p5.*).",
}


def _type_not_allowed(resource: Resource, noun: str, name: str, allowed: list[str]) -> str:
    return (
        f"{resource.label} {noun} instance type {name}, which the department may not use "
        f"(allowed: {', '.join(allowed)}). Use an allowed type, or have the institution add "
        "it to allowedInstanceTypes of this policy."
    )


def reserved_type_allowed(resource: Resource, config: dict[str, Any], report: Report) -> None:
    name, allowed = dig(resource.props, "instanceType"), list(config["allowedInstanceTypes"])
    if isinstance(name, str) and not matches_pattern(name, allowed):
        report(_type_not_allowed(resource, "reserves", name, allowed))


def _covered(entry: str, allowed: list[str]) -> bool:
    """Whether every type an EC2 ``allowedInstanceTypes`` entry admits is allowed.

    An exact name is matched against the patterns; a pattern only when the department
    allows that same pattern or everything (telling whether one glob covers another is
    not worth the doubt).
    """
    if "*" in allowed or entry in allowed:
        return True
    return not any(c in entry for c in "*?[") and matches_pattern(entry, allowed)


def template_type_allowed(resource: Resource, config: dict[str, Any], report: Report) -> None:
    allowed = list(config["allowedInstanceTypes"])
    name = dig(resource.props, "instanceType")
    if isinstance(name, str) and not matches_pattern(name, allowed):
        report(_type_not_allowed(resource, "names", name, allowed))

    # Attribute-based selection: EC2 launches any type that meets the requirements, limited
    # only by the requirements' own allowedInstanceTypes.
    requirements = dig(resource.props, "instanceRequirements")
    if requirements is None or has_unknown(dig(requirements, "allowedInstanceTypes")):
        return
    entries = [str(e) for e in items(dig(requirements, "allowedInstanceTypes"))]
    outside = [e for e in entries if not _covered(e, allowed)]
    if not entries and "*" not in allowed:
        report(
            f"{resource.label} lets EC2 launch any instance type that meets its "
            "instance_requirements, including types the department may not use (allowed: "
            f"{', '.join(allowed)}). Set instance_requirements.allowed_instance_types to "
            "allowed types, or name an allowed instance_type instead."
        )
    elif outside:
        report(
            f"{resource.label} lets EC2 choose among {', '.join(outside)} "
            "(instance_requirements.allowed_instance_types), beyond the types the department "
            f"may use (allowed: {', '.join(allowed)}). List only allowed types there."
        )


def reservation_targeted(resource: Resource, config: dict[str, Any], report: Report) -> None:
    criteria = dig(resource.props, "instanceMatchCriteria")
    if is_unknown(criteria) or criteria == "targeted":
        return
    report(
        f"{resource.label} has instance match criteria {criteria or 'open (the default)'}: "
        "an open reservation is used (and paid for) by any matching launch in the account. "
        "Set instance_match_criteria='targeted'."
    )


def _parse_date(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def reservation_end_date(resource: Resource, config: dict[str, Any], report: Report) -> None:
    end_type, end = dig(resource.props, "endDateType"), dig(resource.props, "endDate")
    if is_unknown(end_type) or is_unknown(end):
        return
    if end_type != "limited" or end is None:
        report(
            f"{resource.label} has no end date (end date type {end_type or 'unlimited'}), so "
            "it is paid for until someone cancels it. Set end_date_type='limited' and an "
            "end_date."
        )
        return
    ends = _parse_date(end)
    if ends is None:
        report(f"{resource.label} has end date {end!r}, which is not an ISO 8601 timestamp.")
        return
    max_days = int(config["maxDaysAhead"])
    days = (ends - now()).total_seconds() / 86400
    if days > max_days:
        report(
            f"{resource.label} ends {end}, {days:.0f} days from now; reservations may end at "
            f"most {max_days} days ahead. Move end_date closer, or have the institution raise "
            "maxDaysAhead of this policy."
        )


def reservation_count(resource: Resource, config: dict[str, Any], report: Report) -> None:
    count = number(dig(resource.props, "instanceCount"))
    limit = int(config["maxInstanceCount"])
    if count is not None and count > limit:
        report(
            f"{resource.label} reserves {count:.0f} instances; at most {limit} per reservation. "
            "Lower instance_count, or have the institution raise maxInstanceCount."
        )


def capacity_block_opt_in(resource: Resource, config: dict[str, Any], report: Report) -> None:
    if config["allowCapacityBlocks"]:
        return
    if resource.type == types.CAPACITY_BLOCK:
        report(
            f"{resource.label} buys a capacity block, which is paid up front and cannot be "
            "cancelled. Remove it, or have the institution set allowCapacityBlocks of this "
            "policy to true for the department."
        )
    elif dig(resource.props, "instanceMarketOptions", "marketType") == "capacity-block":
        report(
            f"{resource.label} launches into capacity blocks (market type capacity-block), "
            "which are paid up front and cannot be cancelled. Remove instance_market_options, "
            "or have the institution set allowCapacityBlocks of this policy to true."
        )


def _price(instance_type: str) -> Decimal | None:
    found = CATALOG.get(instance_type)
    return found.on_demand_usd_per_hour if found is not None else None


_UNKNOWN_BUDGET = object()


def _monthly_budget(resources: list[Resource], config: dict[str, Any]) -> Any:
    """The monthly budget in USD; None when there is none, ``_UNKNOWN_BUDGET`` at preview."""
    for budget in (r for r in resources if r.type == types.BUDGET):
        raw = [dig(budget.props, k) for k in ("limitAmount", "limitUnit", "timeUnit")]
        if any(is_unknown(v) for v in raw):
            return _UNKNOWN_BUDGET
        amount = number(raw[0])
        months = MONTHS_PER_PERIOD.get(str(raw[2]), 1)
        if amount is not None and raw[1] in (None, "USD"):
            return Decimal(str(amount)) / months
    configured = number(config["monthlyBudgetUsd"])
    return Decimal(str(configured)) if configured else None


@dataclass(frozen=True)
class _Commitment:
    """What one reservation or capacity block commits: instances x price x hours."""

    resource: Resource
    instance_type: str
    count: float
    hours: Decimal
    # Hours from now until it ends: how long the budget has to pay for it.
    hours_left: Decimal


def _commitment(r: Resource, at: datetime) -> _Commitment | None:
    """None when unknown at preview, open-ended (the end-date policy's) or already over."""
    name, count = dig(r.props, "instanceType"), number(dig(r.props, "instanceCount"))
    ends = _parse_date(dig(r.props, "endDate"))
    if not isinstance(name, str) or count is None or ends is None or ends <= at:
        return None
    left = Decimal(str((ends - at).total_seconds())) / 3600
    if r.type != types.CAPACITY_BLOCK:
        return _Commitment(r, name, count, left, left)
    # A capacity block is paid up front for its whole length, from its start date.
    starts = _parse_date(dig(r.props, "startDate"))
    length = Decimal(str((ends - starts).total_seconds())) / 3600 if starts else left
    return _Commitment(r, name, count, length, left)


def committed_spend(
    resources: list[Resource], config: dict[str, Any], report: ReportViolation
) -> None:
    at = now()
    committed, lines, longest_hours = Decimal(0), [], Decimal(0)
    for r in resources:
        if r.type not in (types.RESERVATION, types.CAPACITY_BLOCK):
            continue
        commitment = _commitment(r, at)
        if commitment is None:
            continue
        name = commitment.instance_type
        price = _price(name)
        if price is None:
            report(
                f"{r.label} reserves {name}, which has no price in ORCA's instance catalog, "
                "so its commitment cannot be checked. Add the type with its price to "
                "orca/data/instance_types.json, or reserve a priced type.",
                r.urn,
            )
            continue
        longest_hours = max(longest_hours, commitment.hours_left)
        cost = Decimal(str(commitment.count)) * price * commitment.hours
        committed += cost
        kind = " (capacity block, paid up front)" if r.type == types.CAPACITY_BLOCK else ""
        lines.append(
            f"{commitment.count:.0f} x {name} at {price} USD/h for {commitment.hours:.0f} h"
            f"{kind} = {cost:,.0f} USD"
        )
    if not lines:
        return
    monthly = _monthly_budget(resources, config)
    if monthly is _UNKNOWN_BUDGET:
        return
    if monthly is None:
        report(
            "The stack reserves capacity but declares no AWS Budget and the policy has no "
            "monthlyBudgetUsd, so its commitment cannot be checked. Declare the department's "
            "aws.budgets.Budget, or set monthlyBudgetUsd of this policy.",
            None,  # the stack as a whole, not one resource
        )
        return
    months = max(Decimal(1), longest_hours / HOURS_PER_MONTH)
    share = Decimal(str(config["maxBudgetShare"]))
    allowed = monthly * months * share
    if committed > allowed:
        report(
            f"The capacity reservations and blocks commit {committed:,.0f} USD until they end "
            f"({'; '.join(lines)}), more than {share:.0%} of the budget of {monthly:,.0f} USD "
            f"a month over those {months:.1f} months ({allowed:,.0f} USD). Reserve fewer or "
            "cheaper instances, end the reservations sooner, or raise the budget.",
            None,  # the stack as a whole, not one resource
        )


def _budget_department(budget: Resource) -> Any:
    """The budget's department tag: its own or its provider's; UNKNOWN if it may be either."""
    budget_tags = dig(budget.props, "tags")
    if isinstance(budget_tags, dict) and orca_tags.COST_DEPARTMENT in budget_tags:
        return budget_tags[orca_tags.COST_DEPARTMENT]
    defaults = provider_default_tags(budget.provider_props)
    if is_unknown(budget_tags) or is_unknown(defaults):
        return UNKNOWN
    return defaults.get(orca_tags.COST_DEPARTMENT)


def department_budget(
    resources: list[Resource], config: dict[str, Any], report: ReportViolation
) -> None:
    budgets = [r for r in resources if r.type == types.BUDGET]
    if len(budgets) != 1:
        report(
            f"The stack declares {len(budgets)} AWS Budgets; a department stack needs exactly "
            "one monthly budget on its department tag. Declare one aws.budgets.Budget (the "
            "envelope's orca_infra.budget.Budget does).",
            None,  # the stack as a whole, not one resource
        )
        return
    budget = budgets[0]
    props, urn = budget.props, budget.urn
    for key, wanted in (("timeUnit", "MONTHLY"), ("budgetType", "COST")):
        value = dig(props, key)
        if not is_unknown(value) and value != wanted:
            report(f"{budget.label} has {key} {value}; set it to {wanted}.", urn)

    tag_key = orca_tags.COST_DEPARTMENT
    department = _budget_department(budget)
    wanted_value = f"user:{tag_key}${department}" if isinstance(department, str) else None
    filters = dig(props, "costFilters")
    if not has_unknown(filters) and not is_unknown(department):
        values = [
            v
            for f in items(filters)
            if dig(f, "name") == "TagKeyValue"
            for v in items(dig(f, "values"))
        ]
        matched = any(
            v == wanted_value or (wanted_value is None and str(v).startswith(f"user:{tag_key}$"))
            for v in values
        )
        if not matched:
            report(
                f"{budget.label} is not filtered on the department's cost tag. Add the cost "
                f"filter TagKeyValue = {wanted_value or f'user:{tag_key}$<department>'}.",
                urn,
            )

    notifications = dig(props, "notifications")
    if has_unknown(notifications):
        return
    kinds = {
        dig(n, "notificationType")
        for n in items(notifications)
        if items(dig(n, "subscriberEmailAddresses")) or items(dig(n, "subscriberSnsTopicArns"))
    }
    missing = [k for k in ("ACTUAL", "FORECASTED") if k not in kinds]
    if missing:
        report(
            f"{budget.label} has no {' and no '.join(missing)} notification with a subscriber. "
            "Add notifications of type ACTUAL and FORECASTED with subscriber emails.",
            urn,
        )


def spot_max_price(resource: Resource, config: dict[str, Any], report: Report) -> None:
    options = dig(resource.props, "instanceMarketOptions")
    if dig(options, "marketType") != "spot":
        return
    max_price, name = (
        number(dig(options, "spotOptions", "maxPrice")),
        dig(resource.props, "instanceType"),
    )
    if max_price is None or not isinstance(name, str):
        return  # no cap means "up to on-demand"; no type means the launch names it
    price = _price(name)
    if price is None:
        report(
            f"{resource.label} caps spot at {max_price} USD/h for {name}, which has no price in "
            "ORCA's instance catalog. Add the type's price to orca/data/instance_types.json."
        )
    elif Decimal(str(max_price)) > price:
        report(
            f"{resource.label} bids up to {max_price} USD/h for spot {name}, above its on-demand "
            f"price of {price} USD/h. Lower spot_options.max_price to at most {price}, or leave "
            "it out (the on-demand price is the default cap)."
        )


def root_volume_size(resource: Resource, config: dict[str, Any], report: Report) -> None:
    limit = int(config["maxRootVolumeGib"])
    roots = set(config["rootDeviceNames"])
    # Every mapping: a template may map several devices, and the root one need not be first.
    for mapping in items(dig(resource.props, "blockDeviceMappings")):
        size = number(dig(mapping, "ebs", "volumeSize"))
        device = dig(mapping, "deviceName")
        if device in roots and size is not None and size > limit:
            report(
                f"{resource.label} gives {device} {size:.0f} GiB; root volumes may have at most "
                f"{limit} GiB. Lower ebs.volume_size, or have the institution raise "
                "maxRootVolumeGib of this policy."
            )


def nat_gateways(
    resources: list[Resource], config: dict[str, Any], report: ReportViolation
) -> None:
    nats = [r for r in resources if r.type == types.NAT_GATEWAY]
    limit = int(config["maxNatGateways"])
    if len(nats) > limit:
        report(
            f"The stack declares {len(nats)} NAT gateways ({', '.join(r.name for r in nats)}); "
            f"at most {limit}, each costs about 33 USD a month plus traffic. Route all private "
            "subnets through one NAT gateway.",
            None,  # the stack as a whole, not one resource
        )


def s3_gateway_endpoint(
    resources: list[Resource], config: dict[str, Any], report: ReportViolation
) -> None:
    if not any(r.type == types.VPC for r in resources):
        return  # an adopted network: its owner provides the endpoints
    for r in resources:
        if r.type != types.VPC_ENDPOINT:
            continue
        kind, service = dig(r.props, "vpcEndpointType"), dig(r.props, "serviceName")
        if is_unknown(kind) or is_unknown(service):
            return
        if kind == "Gateway" and isinstance(service, str) and service.endswith(".s3"):
            return
    report(
        "The stack creates a VPC without an S3 gateway endpoint, so pod bundles and image "
        "layers cross the NAT gateway at 0.045 USD/GB. Add an aws.ec2.VpcEndpoint with "
        "vpc_endpoint_type='Gateway' and service_name='com.amazonaws.<region>.s3' on the "
        "private route tables.",
        None,  # the stack as a whole, not one resource
    )


def log_retention(resource: Resource, config: dict[str, Any], report: Report) -> None:
    days = dig(resource.props, "retentionInDays")
    if is_unknown(days):
        return
    limit = int(config["maxRetentionDays"])
    value = number(days)
    if not value:
        report(
            f"{resource.label} keeps logs forever (no retention). Set retention_in_days, at "
            f"most {limit}."
        )
    elif value > limit:
        report(
            f"{resource.label} keeps logs {value:.0f} days; at most {limit}. Lower "
            "retention_in_days, or have the institution raise maxRetentionDays."
        )
