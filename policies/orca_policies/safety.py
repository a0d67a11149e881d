"""The safety pack's policies: no holes in a department's envelope.

Burst instances run researchers' containers with the instance role's credentials in reach,
so the envelope keeps them off the internet (no public addresses), keeps the metadata
service to the host (IMDSv2, one hop), encrypts what they store, tags everything with the
department's cost tags, and trusts exactly one service account with the runtime's role.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from pulumi_policy import ReportViolation

from orca_policies import types
from orca_policies.values import (
    COST_TAG_KEYS,
    Report,
    Resource,
    dig,
    has_unknown,
    is_unknown,
    items,
    json_document,
    number,
    provider_default_tags,
    resource_policy,
    schema,
    stack_policy,
    truthy,
)

WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"


def _subnet_no_public_ip(resource: Resource, config: dict[str, Any], report: Report) -> None:
    name_tag = dig(resource.props, "tags", "Name")
    names = [resource.name, *([name_tag] if isinstance(name_tag, str) else [])]
    patterns = list(config["burstSubnetPatterns"])
    if not any(fnmatchcase(n, p) for n in names for p in patterns):
        return
    if truthy(dig(resource.props, "mapPublicIpOnLaunch")):
        report(
            f"{resource.label} is a burst subnet that maps public IPs on launch, so every burst "
            "instance would be reachable from the internet. Set map_public_ip_on_launch=False."
        )


def _template_no_public_ip(resource: Resource, config: dict[str, Any], report: Report) -> None:
    for index, interface in enumerate(items(dig(resource.props, "networkInterfaces"))):
        if truthy(dig(interface, "associatePublicIpAddress")):
            report(
                f"{resource.label} asks for a public IP on network interface {index}. Burst "
                "instances stay private: remove associate_public_ip_address (or set it false)."
            )


def _imdsv2(resource: Resource, config: dict[str, Any], report: Report) -> None:
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


def _template_volumes(resource: Resource, config: dict[str, Any], report: Report) -> None:
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


def _volume_encrypted(resource: Resource, config: dict[str, Any], report: Report) -> None:
    encrypted = dig(resource.props, "encrypted")
    if not is_unknown(encrypted) and not truthy(encrypted):
        report(f"{resource.label} is not encrypted. Set encrypted=True.")


def _bucket_has_sse(props: dict[str, Any]) -> bool:
    rules = dig(props, "serverSideEncryptionConfiguration", "rule")
    return rules is not None


def _buckets_encrypted(
    resources: list[Resource], config: dict[str, Any], report: ReportViolation
) -> None:
    configs = [
        r for r in resources if r.type in (types.BUCKET_ENCRYPTION, types.BUCKET_ENCRYPTION_V2)
    ]
    targets = set()
    for c in configs:
        bucket = dig(c.props, "bucket")
        if is_unknown(bucket):
            return  # at preview a new bucket's name is unknown: nothing can be matched
        rules = dig(c.props, "rules")
        sse = [
            dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm") for rule in items(rules)
        ]
        if has_unknown(rules) or any(sse):
            targets.add(bucket)
    for bucket in (r for r in resources if r.type in (types.BUCKET, types.BUCKET_V2)):
        names = {dig(bucket.props, "bucket"), dig(bucket.props, "id"), bucket.name}
        if any(is_unknown(n) for n in names):
            continue
        if names & targets or _bucket_has_sse(bucket.props):
            continue
        report(
            f"{bucket.label} has no server-side encryption configuration. Add an "
            "aws.s3.BucketServerSideEncryptionConfiguration for it (SSE-KMS with the stack's "
            "key).",
            bucket.urn,
        )


def _queue_encrypted(resource: Resource, config: dict[str, Any], report: Report) -> None:
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


def _missing_tags(found: Any, required: list[str]) -> list[str]:
    return [k for k in required if not (is_unknown(found.get(k)) or found.get(k))]


def _cost_tags(resource: Resource, config: dict[str, Any], report: Report) -> None:
    if not resource.type.startswith("aws:"):
        return
    props = resource.props
    if resource.type not in types.TAGGABLE and "tags" not in props:
        return
    own, all_ = dig(props, "tags"), dig(props, "tagsAll")
    if is_unknown(own) or is_unknown(all_):
        return
    effective = {
        **provider_default_tags(resource.provider_props),
        **(all_ if isinstance(all_, dict) else {}),
        **(own if isinstance(own, dict) else {}),
    }
    missing = _missing_tags(effective, list(config["requiredTags"]))
    if missing:
        report(
            f"{resource.label} lacks the tags {', '.join(missing)} (neither its own tags nor "
            "its provider's default tags carry them), so its cost is not charged to the "
            "department. Add them to the resource's tags or to the aws provider's "
            "default_tags."
        )


def _tag_specifications(resource: Resource, config: dict[str, Any], report: Report) -> None:
    specs = dig(resource.props, "tagSpecifications")
    if is_unknown(specs) or has_unknown([dig(s, "resourceType") for s in specs or []]):
        return
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


def _irsa_trust(resource: Resource, config: dict[str, Any], report: Report) -> None:
    document = json_document(dig(resource.props, "assumeRolePolicy"))
    audience = config["audience"]
    statements = dig(document, "Statement") if isinstance(document, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    for statement in items(statements):
        actions = dig(statement, "Action")
        actions = actions if isinstance(actions, list) else [actions]
        if WEB_IDENTITY not in actions or dig(statement, "Effect") != "Allow":
            continue
        conditions = dig(statement, "Condition") or {}
        for operator in conditions:
            if operator != "StringEquals":
                report(
                    f"{resource.label} trusts web identities with a {operator} condition. Use "
                    "StringEquals on the issuer's :sub and :aud only."
                )
        exact = conditions.get("StringEquals") or {}
        keys = {key.rsplit(":", 1)[-1]: value for key, value in exact.items()}
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


def _containers(resource: Resource) -> list[dict[str, Any]]:
    spec = dig(resource.props, "spec", "template", "spec")
    found = items(dig(spec, "containers")) + items(dig(spec, "initContainers"))
    return [c for c in found if isinstance(c, dict)]


def _deployment_limits(resource: Resource, config: dict[str, Any], report: Report) -> None:
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


def _deployment_not_privileged(resource: Resource, config: dict[str, Any], report: Report) -> None:
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


_REQUIRED_TAGS = {
    "type": "array",
    "items": {"type": "string"},
    "default": list(COST_TAG_KEYS),
    "description": "The tags every taggable resource must carry.",
}

POLICIES = [
    resource_policy(
        name="ec2-subnet-no-public-ip",
        description="Checks that the private burst subnets never map public IPs on launch.",
        remediation="Set map_public_ip_on_launch=False on every burst subnet.",
        types=[types.SUBNET],
        check=_subnet_no_public_ip,
        config=schema(
            burstSubnetPatterns={
                "type": "array",
                "items": {"type": "string"},
                "default": ["*private*"],
                "description": "Patterns of the logical or Name-tag names of burst subnets.",
            }
        ),
    ),
    resource_policy(
        name="ec2-launch-template-no-public-ip",
        description="Checks that launch templates never give burst instances a public IP.",
        remediation="Remove associate_public_ip_address from the template's network "
        "interfaces (or set it false).",
        types=[types.LAUNCH_TEMPLATE],
        check=_template_no_public_ip,
    ),
    resource_policy(
        name="ec2-launch-template-imdsv2",
        description="Checks that launch templates require IMDSv2 with a hop limit of 1.",
        remediation="Set metadata_options http_tokens='required' and "
        "http_put_response_hop_limit=1.",
        types=[types.LAUNCH_TEMPLATE],
        check=_imdsv2,
        config=schema(
            maxHopLimit={
                "type": "integer",
                "minimum": 1,
                "default": 1,
                "description": "The highest metadata PUT response hop limit allowed.",
            }
        ),
    ),
    resource_policy(
        name="ec2-launch-template-encrypted-volumes",
        description="Checks that launch templates map only encrypted EBS volumes.",
        remediation="Set ebs.encrypted='true' on every block device mapping.",
        types=[types.LAUNCH_TEMPLATE],
        check=_template_volumes,
    ),
    resource_policy(
        name="ebs-volume-encrypted",
        description="Checks that EBS volumes are encrypted.",
        remediation="Set encrypted=True on the volume.",
        types=[types.VOLUME],
        check=_volume_encrypted,
    ),
    stack_policy(
        name="s3-bucket-encrypted",
        description="Checks that every S3 bucket has a server-side encryption configuration.",
        remediation="Add an aws.s3.BucketServerSideEncryptionConfiguration for the bucket.",
        check=_buckets_encrypted,
    ),
    resource_policy(
        name="sqs-queue-encrypted",
        description="Checks that SQS queues encrypt their messages.",
        remediation="Set sqs_managed_sse_enabled=True or a kms_master_key_id.",
        types=[types.QUEUE],
        check=_queue_encrypted,
    ),
    resource_policy(
        name="aws-resource-cost-tags",
        description="Checks that every taggable AWS resource carries the department and "
        "cost-center tags, its own or its provider's default tags.",
        remediation="Add the tags to the aws provider's default_tags or to the resource.",
        types=None,
        check=_cost_tags,
        config=schema(requiredTags=_REQUIRED_TAGS),
    ),
    resource_policy(
        name="ec2-launch-template-tag-specifications",
        description="Checks that launch templates tag the instances and volumes they launch "
        "with the department and cost-center tags.",
        remediation="Add tag_specifications for instance and volume with the cost tags.",
        types=[types.LAUNCH_TEMPLATE],
        check=_tag_specifications,
        config=schema(
            requiredTags=_REQUIRED_TAGS,
            resourceTypes={
                "type": "array",
                "items": {"type": "string"},
                "default": ["instance", "volume"],
                "description": "The launched resource types that must be tagged.",
            },
        ),
    ),
    resource_policy(
        name="iam-role-irsa-trust-exact",
        description="Checks that a role assumed with a web identity (IRSA) trusts exactly one "
        "service account and audience, with StringEquals and no wildcards.",
        remediation="Use a StringEquals condition on <issuer>:sub "
        "(system:serviceaccount:<namespace>:<name>) and <issuer>:aud (sts.amazonaws.com).",
        types=[types.IAM_ROLE],
        check=_irsa_trust,
        config=schema(
            audience={
                "type": "string",
                "default": "sts.amazonaws.com",
                "description": "The audience the service-account token must be issued for.",
            }
        ),
    ),
    resource_policy(
        name="kubernetes-deployment-resource-limits",
        description="Checks that every container of a Deployment has CPU and memory limits.",
        remediation="Set resources.limits.cpu and resources.limits.memory on each container.",
        types=[types.DEPLOYMENT],
        check=_deployment_limits,
        config=schema(
            requiredLimits={
                "type": "array",
                "items": {"type": "string"},
                "default": ["cpu", "memory"],
                "description": "The resources every container must limit.",
            }
        ),
    ),
    resource_policy(
        name="kubernetes-deployment-not-privileged",
        description="Checks that no container of a Deployment is privileged or may escalate "
        "its privileges.",
        remediation="Remove securityContext.privileged and set "
        "securityContext.allowPrivilegeEscalation=false on each container.",
        types=[types.DEPLOYMENT],
        check=_deployment_not_privileged,
    ),
]
