"""The ORCA burst envelope of one department (one stack per department).

``pulumi up`` reads the stack's configuration once (a bad value stops it before anything is
touched), builds the envelope in AWS and deploys the department's runtime into the cluster
with the settings generated from what it built. The components live in ``orca_infra``.
"""

import pulumi
import pulumi_aws as aws
from orca_infra.budget import Budget, BudgetArgs
from orca_infra.capacity import Capacity, CapacityArgs
from orca_infra.cluster import RuntimeDeployment, RuntimeDeploymentArgs
from orca_infra.config import AdoptedNetwork, load_config
from orca_infra.iam import (
    InstanceIdentity,
    InstanceIdentityArgs,
    RuntimeIdentity,
    RuntimeIdentityArgs,
)
from orca_infra.interruptions import Interruptions, InterruptionsArgs
from orca_infra.launch_templates import LaunchTemplates, LaunchTemplatesArgs
from orca_infra.network import Network, NetworkArgs, check_adopted_subnets
from orca_infra.settings import runtime_settings
from orca_infra.storage import Storage, StorageArgs

config = load_config()
prefix = config.prefix
tags = config.resource_tags

# Default tags reach what Pulumi creates; what the runtime launches is tagged by the
# launch templates' tag specifications instead.
aws_provider = aws.Provider("aws", region=config.region, default_tags={"tags": tags})
in_aws = pulumi.ResourceOptions(providers=[aws_provider])
invoke = pulumi.InvokeOutputOptions(provider=aws_provider)
account = aws.get_caller_identity_output(opts=invoke).account_id
partition = aws.get_partition_output(opts=invoke).partition

if isinstance(config.network, AdoptedNetwork):
    # Before anything is declared: an adopted subnet must not map public IPs on launch.
    check_adopted_subnets(
        config.network,
        config.capacity_reservations,
        pulumi.InvokeOptions(provider=aws_provider),
    )

network = Network(
    prefix,
    NetworkArgs(
        network=config.network,
        region=config.region,
        tags=tags,
        reservations=config.capacity_reservations,
    ),
    in_aws,
)

storage = Storage(
    prefix,
    StorageArgs(
        cluster=config.cluster_name,
        department=config.department,
        log_retention_days=config.log_retention_days,
        bundle_expiry_days=config.bundle_expiry_days,
        tags=tags,
    ),
    in_aws,
)

interruptions = Interruptions(f"{prefix}-interruptions", InterruptionsArgs(tags=tags), in_aws)

instance_identity = InstanceIdentity(
    f"{prefix}-instance",
    InstanceIdentityArgs(
        bucket_arn=storage.bucket.arn,
        key_arn=storage.key.arn,
        log_group_arn=storage.log_group.arn,
        status_queue_arn=storage.status_queue.arn,
        partition=partition,
        region=config.region,
        account=account,
        cluster=config.cluster_name,
        department=config.department,
        tags=tags,
    ),
    in_aws,
)

launch_templates = LaunchTemplates(
    prefix,
    LaunchTemplatesArgs(
        instance_profile_arn=instance_identity.profile.arn,
        tags=tags,
    ),
    in_aws,
)

capacity = Capacity(
    prefix, CapacityArgs(reservations=config.capacity_reservations, tags=tags), in_aws
)

runtime_identity = RuntimeIdentity(
    f"{prefix}-runtime",
    RuntimeIdentityArgs(
        partition=partition,
        region=config.region,
        account=account,
        cluster=config.cluster_name,
        department=config.department,
        launch_template_arns=launch_templates.arns,
        subnet_ids=network.subnet_ids,
        security_group_id=network.security_group_id,
        instance_role_arn=instance_identity.role.arn,
        queue_arns=[storage.status_queue.arn, interruptions.queue.arn],
        bucket_arn=storage.bucket.arn,
        key_arn=storage.key.arn,
        log_group_arn=storage.log_group.arn,
        table_arn=storage.ledger.arn,
        reservation_arns=capacity.arns,
        reservation_group_arn=capacity.group_arn,
        allowed_instance_types=config.allowed_instance_types,
        oidc_issuer_url=config.oidc_issuer_url,
        oidc_provider_arn=config.oidc_provider_arn,
        namespace=config.runtime_namespace,
        service_account=config.service_account,
        tags=tags,
    ),
    in_aws,
)

budget = Budget(
    prefix,
    BudgetArgs(
        cluster=config.cluster_name,
        department=config.department,
        limit_usd=config.budget,
        alert_emails=config.budget_alert_emails,
        tags=tags,
    ),
    in_aws,
)

settings = pulumi.Output.all(
    subnet_ids=network.subnet_ids,
    security_group_id=network.security_group_id,
    launch_templates=pulumi.Output.all(**launch_templates.ids),
    status_queue_url=storage.status_queue.url,
    bundle_bucket=storage.bucket.bucket,
    log_group=storage.log_group.name,
    ledger_table=storage.ledger.name,
    reservation_group_arn=capacity.group_arn,
).apply(lambda resolved: runtime_settings(config, **resolved))

RuntimeDeployment(
    prefix,
    RuntimeDeploymentArgs(
        config=config,
        settings=settings,
        role_arn=runtime_identity.role_arn,
        access_key=runtime_identity.access_key,
    ),
)

pulumi.export("nodeName", config.node_name)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("subnetIds", network.subnet_ids)
pulumi.export("securityGroupId", network.security_group_id)
pulumi.export("launchTemplateIds", launch_templates.ids)
pulumi.export("instanceRoleArn", instance_identity.role.arn)
pulumi.export("runtimeRoleArn", runtime_identity.role_arn)
pulumi.export(
    "runtimeCredentials",
    "irsa"
    if runtime_identity.access_key is None
    else "static access key (weaker: set oidcIssuerUrl)",
)
pulumi.export("statusQueueUrl", storage.status_queue.url)
pulumi.export("interruptionQueueUrl", interruptions.queue.url)
pulumi.export("bundleBucket", storage.bucket.bucket)
pulumi.export("logGroup", storage.log_group.name)
pulumi.export("ledgerTable", storage.ledger.name)
pulumi.export("reservationGroupArn", capacity.group_arn)
pulumi.export("budgetName", budget.budget.name)
pulumi.export("runtimeSettings", settings)
