"""The type tokens the policies look at (Pulumi's ``<package>:<module>/<name>:<Type>``)."""

from __future__ import annotations

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
RESERVATION = "aws:ec2/capacityReservation:CapacityReservation"
CAPACITY_BLOCK = "aws:ec2/capacityBlockReservation:CapacityBlockReservation"
INSTANCE = "aws:ec2/instance:Instance"
SUBNET = "aws:ec2/subnet:Subnet"
VPC = "aws:ec2/vpc:Vpc"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
VOLUME = "aws:ebs/volume:Volume"
BUDGET = "aws:budgets/budget:Budget"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_V2 = "aws:s3/bucketV2:BucketV2"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
BUCKET_ENCRYPTION_V2 = (
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
)
QUEUE = "aws:sqs/queue:Queue"
IAM_ROLE = "aws:iam/role:Role"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"

# AWS types that take tags, among those an envelope declares or might. A resource of another
# type counts as taggable when its properties carry a ``tags`` key at all.
TAGGABLE = frozenset(
    {
        LAUNCH_TEMPLATE,
        RESERVATION,
        CAPACITY_BLOCK,
        INSTANCE,
        SUBNET,
        VPC,
        VPC_ENDPOINT,
        NAT_GATEWAY,
        VOLUME,
        BUDGET,
        LOG_GROUP,
        BUCKET,
        BUCKET_V2,
        QUEUE,
        IAM_ROLE,
        "aws:ec2/eip:Eip",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:kms/key:Key",
        "aws:cloudwatch/eventRule:EventRule",
        "aws:iam/user:User",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:dynamodb/table:Table",
        "aws:resourcegroups/group:Group",
        "aws:sns/topic:Topic",
    }
)
