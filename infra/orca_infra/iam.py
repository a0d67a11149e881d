"""Who may do what: the burst instances' role, and the runtime's role (or user).

The instance role is what the agent on a burst instance runs as; the instance profile
carries it into the launch templates. The runtime's identity is, with the cluster's OIDC
issuer configured, a role assumed through IRSA by exactly one service account; without it,
an IAM user whose access key is handed to the runtime as a Kubernetes Secret: a long-lived
credential, so the stack says so in a warning and in its outputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from orca_infra import policies
from orca_infra.policies import SERVICE_ACCOUNT_AUDIENCE, RuntimeScope


@dataclass(frozen=True)
class InstanceIdentityArgs:
    bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    log_group_arn: pulumi.Input[str]
    status_queue_arn: pulumi.Input[str]
    partition: pulumi.Input[str]
    region: str
    account: pulumi.Input[str]
    cluster: str
    department: str
    tags: dict[str, str]


class InstanceIdentity(pulumi.ComponentResource):
    """The burst instances' role and instance profile."""

    def __init__(
        self, name: str, args: InstanceIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:iam:InstanceIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.role = aws.iam.Role(
            f"{name}-role",
            description=(
                "ORCA burst instances: read pod bundles and the runtime heartbeat, write logs, "
                "report status, pull the account's ECR images"
            ),
            assume_role_policy=json.dumps(policies.instance_trust()),
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-policy",
            role=self.role.id,
            policy=pulumi.Output.all(
                bucket_arn=args.bucket_arn,
                key_arn=args.key_arn,
                log_group_arn=args.log_group_arn,
                status_queue_arn=args.status_queue_arn,
                ecr_repositories_arn=pulumi.Output.concat(
                    "arn:", args.partition, ":ecr:", args.region, ":", args.account, ":repository/*"
                ),
            ).apply(
                lambda v: json.dumps(
                    policies.instance_policy(cluster=args.cluster, department=args.department, **v)
                )
            ),
            opts=child,
        )
        self.profile = aws.iam.InstanceProfile(
            f"{name}-profile", role=self.role.name, tags=args.tags, opts=child
        )
        self.register_outputs({"roleArn": self.role.arn, "profileArn": self.profile.arn})


@dataclass(frozen=True)
class RuntimeIdentityArgs:
    partition: pulumi.Input[str]
    region: str
    account: pulumi.Input[str]
    cluster: str
    department: str
    launch_template_arns: Sequence[pulumi.Input[str]]
    subnet_ids: pulumi.Input[Sequence[str]]
    security_group_id: pulumi.Input[str]
    instance_role_arn: pulumi.Input[str]
    queue_arns: Sequence[pulumi.Input[str]]
    bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    log_group_arn: pulumi.Input[str]
    table_arn: pulumi.Input[str]
    reservation_arns: Sequence[pulumi.Input[str]]
    reservation_group_arn: pulumi.Input[str] | None
    allowed_instance_types: Sequence[str]
    oidc_issuer_url: str | None
    oidc_provider_arn: str | None
    namespace: str
    service_account: str
    tags: dict[str, str]


class RuntimeIdentity(pulumi.ComponentResource):
    """The runtime's least-privilege identity: an IRSA role, or the weaker IAM user."""

    role_arn: pulumi.Output[str] | None
    access_key: aws.iam.AccessKey | None

    def __init__(
        self, name: str, args: RuntimeIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:iam:RuntimeIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        policy = self._policy(args)

        self.role_arn = None
        self.access_key = None
        if args.oidc_issuer_url is not None:
            issuer = args.oidc_issuer_url
            if args.oidc_provider_arn is not None:
                provider_arn = pulumi.Output.from_input(args.oidc_provider_arn)
            else:
                provider_arn = aws.iam.OpenIdConnectProvider(
                    f"{name}-oidc",
                    url=issuer,
                    client_id_lists=[SERVICE_ACCOUNT_AUDIENCE],
                    tags=args.tags,
                    opts=child,
                ).arn
            role = aws.iam.Role(
                f"{name}-role",
                description=f"ORCA runtime of {args.cluster}/{args.department} (IRSA)",
                assume_role_policy=provider_arn.apply(
                    lambda arn: json.dumps(
                        policies.web_identity_trust(
                            provider_arn=arn,
                            issuer_url=issuer,
                            namespace=args.namespace,
                            service_account=args.service_account,
                        )
                    )
                ),
                tags=args.tags,
                opts=child,
            )
            aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=policy, opts=child)
            self.role_arn = role.arn
        else:
            pulumi.log.warn(
                "orca:oidcIssuerUrl is not set, so the runtime gets a long-lived IAM access key "
                "in a Kubernetes Secret: the weaker option. Set it to the cluster's "
                "service-account issuer to use IRSA instead.",
                resource=self,
            )
            user = aws.iam.User(f"{name}-user", tags=args.tags, opts=child)
            aws.iam.UserPolicy(f"{name}-policy", user=user.name, policy=policy, opts=child)
            self.access_key = aws.iam.AccessKey(f"{name}-key", user=user.name, opts=child)

        self.register_outputs(
            {
                "roleArn": self.role_arn,
                "usesStaticCredentials": self.access_key is not None,
            }
        )

    @staticmethod
    def _policy(args: RuntimeIdentityArgs) -> pulumi.Output[str]:
        resolved = pulumi.Output.all(
            partition=args.partition,
            account=args.account,
            launch_template_arns=pulumi.Output.all(*args.launch_template_arns),
            subnet_ids=args.subnet_ids,
            security_group_id=args.security_group_id,
            instance_role_arn=args.instance_role_arn,
            queue_arns=pulumi.Output.all(*args.queue_arns),
            bucket_arn=args.bucket_arn,
            key_arn=args.key_arn,
            log_group_arn=args.log_group_arn,
            table_arn=args.table_arn,
            reservation_arns=pulumi.Output.all(*args.reservation_arns),
            reservation_group_arn=args.reservation_group_arn,
        )
        return resolved.apply(
            lambda v: json.dumps(
                policies.runtime_policy(
                    RuntimeScope(
                        region=args.region,
                        cluster=args.cluster,
                        department=args.department,
                        allowed_instance_types=tuple(args.allowed_instance_types),
                        **v,
                    )
                )
            )
        )
