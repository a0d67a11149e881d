"""The checks behind the safety pack's policies (declared in :mod:`orca_policies.safety`).

Each check reads plain properties (:mod:`orca_policies.values`) and skips what is unknown at
preview: a value it cannot know never fails it. Burst subnets are the subnets the envelope
tags as ORCA's (``orca.research/managed-by: orca``, from the runtime's ``orca.tags``); a
bucket is paired with its encryption configuration through the engine's property
dependencies, since the bucket's name is unknown until it exists.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from pulumi_policy import ReportViolation

from orca import tags as orca_tags
from orca_policies import types
from orca_policies.values import (
    Report,
    Resource,
    dig,
    effective_tags,
    has_unknown,
    is_unknown,
    items,
    json_document,
    number,
    truthy,
)

WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"
# The tags that mark a subnet as one the envelope made for burst instances.
BURST_SUBNET_TAGS = {orca_tags.MANAGED_BY: orca_tags.MANAGED_BY_VALUE}


def subnet_no_public_ip(resource: Resource, config: dict[str, Any], report: Report) -> None:
    found, complete = effective_tags(resource.props, resource.provider_props)
    wanted = dict(config["burstSubnetTags"])
    matched = all(found.get(k) == v for k, v in wanted.items())
    if not matched and not complete:
        return  # its tags are unknown at preview: it may or may not be a burst subnet
    if matched and truthy(dig(resource.props, "mapPublicIpOnLaunch")):
        report(
            f"{resource.label} is a burst subnet (tagged "
            f"{', '.join(f'{k}={v}' for k, v in wanted.items())}) that maps public IPs on "
            "launch, so every burst instance would be reachable from the internet. Set "
            "map_public_ip_on_launch=False."
        )


def template_no_public_ip(resource: Resource, config: dict[str, Any], report: Report) -> None:
    for index, interface in enumerate(items(dig(resource.props, "networkInterfaces"))):
        if truthy(dig(interface, "associatePublicIpAddress")):
            report(
                f"{resource.label} asks for a public IP on network interface {index}. Burst "
                "instances stay private: remove associate_public_ip_address (or set it false)."
            )


def imdsv2(resource: Resource, config: dict[str, Any], report: Report) -> None:
    options = dig(resource.props, "metadataOptions")
    if is_unknown(options) or dig(options, "httpEndpoint") == "disabled":
        return
    tokens = dig(options, "httpTokens")
    if not is_unknown(tokens) and tokens != "required":
        report(
            f"{resource.label} lets instances use IMDSv1 (http_tokens {tokens or 'optional'}). "
            "Set metadata_options.http_tokens='required'."
        )
    limit = int(config["maxHopLimit"])
    hops = dig(options, "httpPutResponseHopLimit")
    if not is_unknown(hops) and (number(hops) is None or (number(hops) or 0) > limit):
        report(
            f"{resource.label} has metadata hop limit {hops if hops is not None else 'unset'}; "
            f"it must be at most {limit} so containers cannot reach the role's credentials. "
            f"Set metadata_options.http_put_response_hop_limit={limit}."
        )


def template_volumes(resource: Resource, config: dict[str, Any], report: Report) -> None:
    # Every mapping, whatever its position: the root volume and any data volume.
    for mapping in items(dig(resource.props, "blockDeviceMappings")):
        ebs = dig(mapping, "ebs")
        if ebs is None or is_unknown(ebs):
            continue
        encrypted = dig(ebs, "encrypted")
        if not is_unknown(encrypted) and not truthy(encrypted):
            report(
                f"{resource.label} maps {dig(mapping, 'deviceName')} to an unencrypted EBS "
                "volume. Set ebs.encrypted='true'."
            )


def volume_encrypted(resource: Resource, config: dict[str, Any], report: Report) -> None:
    encrypted = dig(resource.props, "encrypted")
    if not is_unknown(encrypted) and not truthy(encrypted):
        report(f"{resource.label} is not encrypted. Set encrypted=True.")


def _inline_sse(bucket: Resource) -> Any:
    """The algorithms a bucket's own encryption settings name; None if unknown at preview.

    ``aws.s3.Bucket`` has one ``serverSideEncryptionConfiguration.rule`` object;
    ``aws.s3.BucketV2`` a list ``serverSideEncryptionConfigurations``, each with a list of
    ``rules``, each with a list ``applyServerSideEncryptionByDefaults``.
    """
    single = dig(bucket.props, "serverSideEncryptionConfiguration")
    plural = dig(bucket.props, "serverSideEncryptionConfigurations")
    if has_unknown(single) or has_unknown(plural):
        return None
    found = [dig(single, "rule", "applyServerSideEncryptionByDefault", "sseAlgorithm")]
    found += [
        dig(default, "sseAlgorithm")
        for configuration in items(plural)
        for rule in items(dig(configuration, "rules"))
        for default in items(dig(rule, "applyServerSideEncryptionByDefaults"))
    ]
    return [a for a in found if a]


def _encrypts(configuration: Resource) -> bool:
    """Whether an encryption configuration sets a default algorithm (or may, at preview)."""
    rules = dig(configuration.props, "rules")
    if has_unknown(rules):
        return True
    return any(
        dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in items(rules)
    )


def buckets_encrypted(
    resources: list[Resource], config: dict[str, Any], report: ReportViolation
) -> None:
    configurations = [
        r for r in resources if r.type in (types.BUCKET_ENCRYPTION, types.BUCKET_ENCRYPTION_V2)
    ]
    # A configuration names its bucket in ``bucket``: the engine says which resource that
    # value comes from (its property dependencies), and after an update the value is known.
    covered_urns: set[str] = set()
    covered_names: set[str] = set()
    unpaired = False
    for c in configurations:
        if not _encrypts(c):
            continue
        covered_urns.update(c.dependencies.get("bucket", []))
        name = dig(c.props, "bucket")
        if isinstance(name, str):
            covered_names.add(name)
        elif is_unknown(name) and not c.dependencies.get("bucket"):
            unpaired = True  # unknown at preview and from no known resource: any bucket's

    for bucket in (r for r in resources if r.type in (types.BUCKET, types.BUCKET_V2)):
        inline = _inline_sse(bucket)
        if inline is None or inline or bucket.urn in covered_urns:
            continue
        names = {dig(bucket.props, key) for key in ("bucket", "id")}
        if names & covered_names or unpaired:
            continue
        report(
            f"{bucket.label} has no server-side encryption configuration. Add an "
            "aws.s3.BucketServerSideEncryptionConfiguration for it (SSE-KMS with the stack's "
            "key).",
            bucket.urn,
        )


def queue_encrypted(resource: Resource, config: dict[str, Any], report: Report) -> None:
    managed, key = (
        dig(resource.props, "sqsManagedSseEnabled"),
        dig(resource.props, "kmsMasterKeyId"),
    )
    if is_unknown(managed) or is_unknown(key) or truthy(managed) or key:
        return
    report(
        f"{resource.label} stores messages unencrypted. Set sqs_managed_sse_enabled=True (or a "
        "kms_master_key_id)."
    )


def _missing_tags(found: dict[str, Any], required: list[str]) -> list[str]:
    return [k for k in required if not (is_unknown(found.get(k)) or found.get(k))]


def cost_tags(resource: Resource, config: dict[str, Any], report: Report) -> None:
    if not resource.type.startswith("aws:"):
        return
    if resource.type not in types.TAGGABLE and "tags" not in resource.props:
        return
    found, complete = effective_tags(resource.props, resource.provider_props)
    missing = _missing_tags(found, list(config["requiredTags"]))
    if missing and complete:
        report(
            f"{resource.label} lacks the tags {', '.join(missing)} (neither its own tags nor "
            "its provider's default tags carry them), so its cost is not charged to the "
            "department. Add them to the resource's tags or to the aws provider's "
            "default_tags."
        )


def tag_specifications(resource: Resource, config: dict[str, Any], report: Report) -> None:
    specs = dig(resource.props, "tagSpecifications")
    if is_unknown(specs) or has_unknown([dig(s, "resourceType") for s in items(specs)]):
        return
    if isinstance(specs, list) and len(items(specs)) < len(specs):
        return  # a whole entry is unknown: it may tag any resource type
    required = list(config["requiredTags"])
    by_type = {dig(s, "resourceType"): dig(s, "tags") for s in items(specs)}
    for kind in config["resourceTypes"]:
        found = by_type.get(kind)
        if is_unknown(found):
            continue
        missing = _missing_tags(found if isinstance(found, dict) else {}, required)
        if missing:
            report(
                f"{resource.label} does not tag the {kind}s it launches with "
                f"{', '.join(missing)}; provider default tags do not reach what the runtime "
                f"launches. Add a tag_specifications entry for {kind} with those tags."
            )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _web_identity_statement(statement: Any) -> bool:
    """Whether an Allow statement can let a web identity (a service account) assume the role.

    A federated principal, or an action that names or matches ``AssumeRoleWithWebIdentity``
    (``*``, ``sts:*``); IAM action names are case-insensitive.
    """
    if dig(statement, "Effect") != "Allow":
        return False
    federated = dig(statement, "Principal", "Federated") is not None
    actions = [a for a in _as_list(dig(statement, "Action")) if isinstance(a, str)]
    matching = any(fnmatchcase(WEB_IDENTITY.lower(), a.lower()) for a in actions)
    return federated or matching or dig(statement, "NotAction") is not None


def _exact_action(resource: Resource, statement: Any, report: Report) -> None:
    actions = _as_list(dig(statement, "Action"))
    if dig(statement, "NotAction") is not None or [str(a).lower() for a in actions] != [
        WEB_IDENTITY.lower()
    ]:
        shown = dig(statement, "Action") or {"NotAction": dig(statement, "NotAction")}
        report(
            f"{resource.label} trusts web identities with the actions {shown!r}, which allow "
            f"more than {WEB_IDENTITY} (or use NotAction). Set the trust statement's Action "
            f"to exactly {WEB_IDENTITY}."
        )


def _exact_conditions(resource: Resource, statement: Any, audience: str, report: Report) -> None:
    conditions = dig(statement, "Condition") or {}
    if not isinstance(conditions, dict):
        conditions = {}
    for operator in conditions:
        if operator != "StringEquals":
            report(
                f"{resource.label} trusts web identities with a {operator} condition. Use "
                "StringEquals on the issuer's :sub and :aud only."
            )
    exact = conditions.get("StringEquals")
    exact = exact if isinstance(exact, dict) else {}
    keys = {str(key).rsplit(":", 1)[-1]: value for key, value in exact.items()}
    sub, aud = keys.get("sub"), keys.get("aud")
    if not isinstance(sub, str) or any(c in sub for c in "*?"):
        report(
            f"{resource.label} does not pin the service account (:sub is {sub!r}). Set "
            "StringEquals <issuer>:sub to system:serviceaccount:<namespace>:<name>."
        )
    if aud != audience:
        report(
            f"{resource.label} does not pin the token audience (:aud is {aud!r}). Set "
            f"StringEquals <issuer>:aud to {audience}."
        )


def irsa_trust(resource: Resource, config: dict[str, Any], report: Report) -> None:
    # The trust policy is JSON text; while any part of it is unknown the whole text is.
    document = json_document(dig(resource.props, "assumeRolePolicy"))
    statements = dig(document, "Statement") if isinstance(document, dict) else None
    for statement in items(_as_list(statements)):
        if not isinstance(statement, dict) or not _web_identity_statement(statement):
            continue
        _exact_action(resource, statement, report)
        _exact_conditions(resource, statement, str(config["audience"]), report)


def _containers(resource: Resource) -> list[dict[str, Any]]:
    spec = dig(resource.props, "spec", "template", "spec")
    found = items(dig(spec, "containers")) + items(dig(spec, "initContainers"))
    return [c for c in found if isinstance(c, dict)]


def deployment_limits(resource: Resource, config: dict[str, Any], report: Report) -> None:
    for container in _containers(resource):
        limits = dig(container, "resources", "limits")
        if is_unknown(limits):
            continue
        missing = [k for k in config["requiredLimits"] if not dig(limits, k)]
        if missing:
            report(
                f"{resource.label} runs container {dig(container, 'name')!r} without "
                f"{' and '.join(missing)} limits. Set resources.limits for "
                f"{' and '.join(missing)}."
            )


def deployment_not_privileged(resource: Resource, config: dict[str, Any], report: Report) -> None:
    for container in _containers(resource):
        context = dig(container, "securityContext")
        if is_unknown(context):
            continue
        name = dig(container, "name")
        if truthy(dig(context, "privileged")):
            report(
                f"{resource.label} runs container {name!r} privileged. Remove "
                "securityContext.privileged."
            )
        escalation = dig(context, "allowPrivilegeEscalation")
        if not is_unknown(escalation) and truthy(escalation) is not False:
            report(
                f"{resource.label} lets container {name!r} gain privileges (Kubernetes allows "
                "it unless told otherwise). Set securityContext.allowPrivilegeEscalation=false."
            )
