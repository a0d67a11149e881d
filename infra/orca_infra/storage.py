"""The stack's records: container logs, pod bundles, the status queue and the cost ledger.

- The log group holds each container's stream, which ``kubectl logs`` reads after the
  instance is gone; retention bounds what it costs.
- The bundle bucket carries each pod's resolved spec (env from Secrets included), so it is
  encrypted with the stack's own KMS key, closed to the public and to plain HTTP, and
  bundles expire even if the runtime never gets to delete them.
- The status queue is where agents report; SQS-managed encryption costs nothing extra and
  needs no key grants on the instances.
- The cost ledger (DynamoDB, pay per request, point-in-time recovery) is where spend accrues.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

BUNDLE_PREFIX = "bundles/"
# The agent polls for 20 s; reports older than four days are of no use to anyone.
QUEUE_RETENTION_SECONDS = 4 * 24 * 3600


@dataclass(frozen=True)
class StorageArgs:
    cluster: str
    department: str
    log_retention_days: int
    bundle_expiry_days: int
    tags: dict[str, str]


class Storage(pulumi.ComponentResource):
    """The KMS key, log group, bundle bucket, status queue and ledger table."""

    def __init__(
        self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("orca:storage:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"ORCA {args.cluster}/{args.department}: pod bundles and the ledger",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-containers",
            name=f"/orca/{args.cluster}/{args.department}/containers",
            retention_in_days=args.log_retention_days,
            tags=tags,
            opts=child,
        )

        self.bucket = aws.s3.Bucket(f"{name}-bundles", force_destroy=False, tags=tags, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-bundles",
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": self.key.arn,
                    },
                    # One data key per bucket and hour instead of per object: fewer KMS calls.
                    "bucket_key_enabled": True,
                }
            ],
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-bundles",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-bundles",
            bucket=self.bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-bundles",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": "expire-bundles",
                    "status": "Enabled",
                    "filter": {"prefix": BUNDLE_PREFIX},
                    "expiration": {"days": args.bundle_expiry_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                }
            ],
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{name}-bundles",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(_tls_only_policy),
            opts=child,
        )

        self.status_queue = aws.sqs.Queue(
            f"{name}-status",
            sqs_managed_sse_enabled=True,
            receive_wait_time_seconds=20,
            message_retention_seconds=QUEUE_RETENTION_SECONDS,
            tags=tags,
            opts=child,
        )

        self.ledger = aws.dynamodb.Table(
            f"{name}-ledger",
            billing_mode="PAY_PER_REQUEST",
            hash_key="pk",
            range_key="sk",
            attributes=[{"name": "pk", "type": "S"}, {"name": "sk", "type": "S"}],
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": self.key.arn},
            deletion_protection_enabled=True,
            tags=tags,
            opts=child,
        )

        self.register_outputs(
            {
                "bundleBucket": self.bucket.bucket,
                "logGroup": self.log_group.name,
                "statusQueueUrl": self.status_queue.url,
                "ledgerTable": self.ledger.name,
                "keyArn": self.key.arn,
            }
        )


def _tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyPlainHttp",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )
