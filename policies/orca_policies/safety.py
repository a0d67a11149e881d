"""The safety pack's policies: no holes in a department's envelope.

Burst instances run researchers' containers with the instance role's credentials in reach,
so the envelope keeps them off the internet (no public addresses), keeps the metadata
service to the host (IMDSv2, one hop), encrypts what they store, tags everything with the
department's cost tags, and trusts exactly one service account with the runtime's role.
The checks live in :mod:`orca_policies.safety_checks`; this module names and configures them.
"""

from __future__ import annotations

from orca_policies import safety_checks as checks
from orca_policies import types
from orca_policies.values import COST_TAG_KEYS, resource_policy, schema, stack_policy

_REQUIRED_TAGS = {
    "type": "array",
    "items": {"type": "string"},
    "default": list(COST_TAG_KEYS),
    "description": "The tags every taggable resource must carry.",
}

POLICIES = [
    resource_policy(
        name="ec2-subnet-no-public-ip",
        description="Checks that burst subnets (those the envelope tags as ORCA's) never map "
        "public IPs on launch.",
        remediation="Set map_public_ip_on_launch=False on every burst subnet.",
        types=[types.SUBNET],
        check=checks.subnet_no_public_ip,
        config=schema(
            burstSubnetTags={
                "type": "object",
                "additionalProperties": {"type": "string"},
                "default": dict(checks.BURST_SUBNET_TAGS),
                "description": "The tags (own or provider default) that mark a burst subnet.",
            }
        ),
    ),
    resource_policy(
        name="ec2-launch-template-no-public-ip",
        description="Checks that launch templates never give burst instances a public IP.",
        remediation="Remove associate_public_ip_address from the template's network "
        "interfaces (or set it false).",
        types=[types.LAUNCH_TEMPLATE],
        check=checks.template_no_public_ip,
    ),
    resource_policy(
        name="ec2-launch-template-imdsv2",
        description="Checks that launch templates require IMDSv2 with a hop limit of 1.",
        remediation="Set metadata_options http_tokens='required' and "
        "http_put_response_hop_limit=1.",
        types=[types.LAUNCH_TEMPLATE],
        check=checks.imdsv2,
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
        check=checks.template_volumes,
    ),
    resource_policy(
        name="ebs-volume-encrypted",
        description="Checks that EBS volumes are encrypted.",
        remediation="Set encrypted=True on the volume.",
        types=[types.VOLUME],
        check=checks.volume_encrypted,
    ),
    stack_policy(
        name="s3-bucket-encrypted",
        description="Checks that every S3 bucket has a server-side encryption configuration, "
        "its own resource or the bucket's inline setting.",
        remediation="Add an aws.s3.BucketServerSideEncryptionConfiguration for the bucket.",
        check=checks.buckets_encrypted,
    ),
    resource_policy(
        name="sqs-queue-encrypted",
        description="Checks that SQS queues encrypt their messages.",
        remediation="Set sqs_managed_sse_enabled=True or a kms_master_key_id.",
        types=[types.QUEUE],
        check=checks.queue_encrypted,
    ),
    resource_policy(
        name="aws-taggable-resource-cost-tags",
        description="Checks that every taggable AWS resource carries the department and "
        "cost-center tags, its own or its provider's default tags.",
        remediation="Add the tags to the aws provider's default_tags or to the resource.",
        types=None,
        check=checks.cost_tags,
        config=schema(requiredTags=_REQUIRED_TAGS),
    ),
    resource_policy(
        name="ec2-launch-template-tag-specifications",
        description="Checks that launch templates tag the instances and volumes they launch "
        "with the department and cost-center tags.",
        remediation="Add tag_specifications for instance and volume with the cost tags.",
        types=[types.LAUNCH_TEMPLATE],
        check=checks.tag_specifications,
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
        "service account and audience for exactly sts:AssumeRoleWithWebIdentity, with "
        "StringEquals and no wildcards.",
        remediation="Set the trust statement's Action to sts:AssumeRoleWithWebIdentity only, "
        "with a StringEquals condition on <issuer>:sub "
        "(system:serviceaccount:<namespace>:<name>) and <issuer>:aud (sts.amazonaws.com).",
        types=[types.IAM_ROLE],
        check=checks.irsa_trust,
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
        check=checks.deployment_limits,
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
        check=checks.deployment_not_privileged,
    ),
]
