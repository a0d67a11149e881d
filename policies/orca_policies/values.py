"""Resource properties as plain data, and the policy builders both packs use.

The engine hands a policy the resource's properties behind ``pulumi_policy``'s proxy, which
raises ``UnknownValueError`` on any value not known yet (during ``pulumi preview`` an id or an
ARN of a resource still to be created). Left alone, that error turns the policy into an
advisory "can't run during preview" message. :func:`plain` copies the properties into plain
dicts and lists with :data:`UNKNOWN` in place of every unknown value, so a check can skip
exactly what it cannot know and still check the rest.

:func:`resource_policy` and :func:`stack_policy` wrap a check with that conversion and with
the policy's configuration: the defaults of its config schema, overlaid with what the
institution configured for the policy group (``pulumi policy enable --config``). A stack
check also sees, per resource, which resources each property depends on (the engine's
property dependencies), so it can pair resources without comparing values unknown at preview.

:func:`now` is the one clock of the checks that compare dates with today.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from orca import tags as orca_tags

AWS_PROVIDER = "pulumi:providers:aws"
COST_TAG_KEYS = (orca_tags.COST_DEPARTMENT, orca_tags.COST_CENTER)


class _Unknown:
    """A value the engine does not know yet (preview); never equal to a real value."""

    def __repr__(self) -> str:
        return "<unknown at preview>"


UNKNOWN: Any = _Unknown()


def plain(value: Any) -> Any:
    """``value`` as plain dicts and lists, with :data:`UNKNOWN` for every unknown value."""
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, Mapping):
        result = {}
        for key in value:
            try:
                result[key] = plain(value[key])
            except UnknownValueError:
                result[key] = UNKNOWN
        return result
    if isinstance(value, Sequence):
        items = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def now() -> datetime:
    """The current time, in UTC: the clock every date check reads."""
    return datetime.now(UTC)


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def has_unknown(value: Any) -> bool:
    """Whether ``value`` is unknown or holds an unknown value anywhere inside."""
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def dig(value: Any, *path: str | int) -> Any:
    """The value at ``path``: None when absent, :data:`UNKNOWN` when unknown on the way."""
    for step in path:
        if value is UNKNOWN:
            return UNKNOWN
        if isinstance(step, int):
            value = (
                value[step]
                if isinstance(value, list) and -len(value) <= step < len(value)
                else None
            )
        else:
            value = value.get(step) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def items(value: Any) -> list[Any]:
    """A list property's known items (an unknown or absent list has none)."""
    return [v for v in value if v is not UNKNOWN] if isinstance(value, list) else []


def truthy(value: Any) -> bool | None:
    """A boolean that AWS may spell ``true``, ``"true"`` or ``"True"``; None if unknown/absent."""
    if value is None or value is UNKNOWN:
        return None
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def number(value: Any) -> float | None:
    """A number the engine may send as a float or a string; None if unknown, absent or bad."""
    if value is None or value is UNKNOWN or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def json_document(value: Any) -> Any:
    """An IAM-style document given as JSON text or as an object; None when unknown or bad."""
    if value is UNKNOWN or value is None:
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def provider_default_tags(provider_props: Any) -> Any:
    """The ``defaultTags.tags`` of an aws provider's properties (JSON text or an object).

    Pulumi sends an explicit provider's object-valued settings as JSON text, so the
    provider's ``defaultTags`` usually arrives as ``'{"tags": {...}}'``. :data:`UNKNOWN`
    when they are unknown at preview (then nobody can tell which tags a resource gets).
    """
    raw = dig(provider_props, "defaultTags")
    if is_unknown(raw):
        return UNKNOWN
    default_tags = json_document(raw)
    found = dig(default_tags, "tags") if isinstance(default_tags, dict) else None
    if is_unknown(found):
        return UNKNOWN
    return found if isinstance(found, dict) else {}


def effective_tags(props: Any, provider_props: Any) -> tuple[dict[str, Any], bool]:
    """The tags AWS would put on a resource, and whether all of them are known.

    They are its provider's default tags overlaid with its ``tagsAll`` and its own ``tags``
    (a resource's own tag wins over a default with the same key). A source unknown at
    preview (a whole object, or the provider's ``defaultTags``) leaves the tags incomplete:
    a tag found counts, a tag missing may still come.
    """
    sources = [
        provider_default_tags(provider_props),
        dig(props, "tagsAll"),
        dig(props, "tags"),
    ]
    found: dict[str, Any] = {}
    for source in sources:
        if isinstance(source, dict):
            found.update(source)
    return found, not any(is_unknown(source) for source in sources)


def resource_label(type_: str, name: str) -> str:
    """``aws:ec2/launchTemplate:LaunchTemplate`` and ``x`` -> ``LaunchTemplate 'x'``."""
    return f"{type_.rsplit(':', 1)[-1]} '{name}'"


def schema(**properties: dict[str, Any]) -> PolicyConfigSchema:
    """A config schema; every property should carry its ``default``."""
    return PolicyConfigSchema(properties=dict(properties))


def _settings(
    config_schema: PolicyConfigSchema | None, given: Mapping[str, Any] | None
) -> dict[str, Any]:
    defaults = {
        key: spec["default"]
        for key, spec in (config_schema.properties if config_schema else {}).items()
        if "default" in spec
    }
    return {**defaults, **dict(given or {})}


@dataclass(frozen=True)
class Resource:
    """One resource as a check sees it: plain properties, and its provider's."""

    type: str
    name: str
    urn: str
    props: dict[str, Any]
    provider_props: dict[str, Any]
    # The URNs of the resources each property depends on (stack checks only).
    dependencies: dict[str, list[str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return resource_label(self.type, self.name)


Report = Callable[[str], None]
ResourceCheck = Callable[[Resource, dict[str, Any], Report], None]
StackCheck = Callable[[list[Resource], dict[str, Any], ReportViolation], None]


def resource_policy(
    *,
    name: str,
    description: str,
    remediation: str,
    types: Iterable[str] | None,
    check: ResourceCheck,
    config: PolicyConfigSchema | None = None,
) -> ResourceValidationPolicy:
    """A policy that runs ``check`` on each resource of ``types`` (None: every resource)."""
    wanted = frozenset(types) if types is not None else None

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if wanted is not None and args.resource_type not in wanted:
            return
        provider = plain(args.provider.props) if args.provider is not None else {}
        resource = Resource(args.resource_type, args.name, args.urn, plain(args.props), provider)
        check(resource, _settings(config, args.get_config()), lambda message: report(message, None))

    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        config_schema=config,
        remediation_steps=remediation,
    )


def stack_policy(
    *,
    name: str,
    description: str,
    remediation: str,
    check: StackCheck,
    config: PolicyConfigSchema | None = None,
) -> StackValidationPolicy:
    """A policy that runs ``check`` once over all the stack's resources."""

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        resources = [
            Resource(
                r.resource_type,
                r.name,
                r.urn,
                plain(r.props),
                plain(r.provider.props) if r.provider is not None else {},
                {k: [d.urn for d in deps] for k, deps in r.property_dependencies.items()},
            )
            for r in args.resources
        ]
        check(resources, _settings(config, args.get_config()), report)

    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        config_schema=config,
        remediation_steps=remediation,
    )
