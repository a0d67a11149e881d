"""The pod-bundle store: each pod's resolved spec as one object in the envelope's bucket.

A bundle holds resolved Secrets, so each one is readable by exactly one instance:
the one that runs its pod. Its key ends in that instance's ARN,
``bundles/<pod-uid>/<instance-arn>.json``, and the instance role may read only
``bundles/*/${ec2:SourceInstanceARN}.json``: IAM fills the policy variable with
the ARN of the instance whose role credentials signed the request, so another
burst instance of the department (or a container that got hold of its
credentials) is refused another pod's bundle.

That key cannot exist before the instance does, so the runtime writes the bundle
right after RunInstances answers (and again whenever it adopts an instance after a
restart) and the agent waits for it. The runtime deletes every bundle of a pod when
the pod ends; the bucket's lifecycle rule expires any it never got to.

Objects take the bucket's default encryption: the envelope's own KMS key.
"""

from __future__ import annotations

import logging
from typing import Any

from orca.aws.errors import AwsError, aws_call
from orca.bundle import PodBundle

log = logging.getLogger(__name__)

BUNDLE_PREFIX = "bundles/"
# The keys an instance role may read, as an IAM resource path: every pod's bundle for the
# instance that signs the request, which is one bundle, its own (see :meth:`BundleStore.key`).
INSTANCE_BUNDLE_PATTERN = BUNDLE_PREFIX + "*/${ec2:SourceInstanceARN}.json"


def parse_s3_url(url: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://bucket/key`` URL."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        raise ValueError(f"{url!r} names no bucket and key; expected s3://bucket/key")
    return bucket, key


class BundleStore:
    """Put, get and delete pod bundles under ``prefix`` in one bucket."""

    def __init__(self, s3_client: Any, bucket: str, prefix: str = BUNDLE_PREFIX) -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix

    def key(self, pod_uid: str, instance_arn: str) -> str:
        return f"{self.prefix}{pod_uid}/{instance_arn}.json"

    def url(self, pod_uid: str, instance_arn: str) -> str:
        return f"s3://{self.bucket}/{self.key(pod_uid, instance_arn)}"

    def put(self, bundle: PodBundle, instance_arn: str) -> str:
        """Store the bundle for the one instance that runs its pod; returns its URL."""
        key = self.key(bundle.pod_uid, instance_arn)
        with aws_call(f"storing the bundle of {bundle.namespace}/{bundle.name}"):
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=bundle.to_json().encode(),
                ContentType="application/json",
                # No ServerSideEncryption here: the bucket's default encryption applies, with
                # the envelope's own KMS key, which only the department's roles may use. A
                # request naming aws:kms without a key id gets S3's AWS managed key instead.
            )
        log.debug("stored bundle of %s/%s at %s", bundle.namespace, bundle.name, key)
        return f"s3://{self.bucket}/{key}"

    def get(self, pod_uid: str, instance_arn: str) -> PodBundle:
        """The bundle of ``pod_uid`` for this instance.

        Raises NotFoundError when it does not exist; an instance role, which may not list
        the bucket, gets AuthError (S3's AccessDenied) instead.
        """
        url = self.url(pod_uid, instance_arn)
        with aws_call(f"reading the pod bundle {url}"):
            body = self._s3.get_object(Bucket=self.bucket, Key=self.key(pod_uid, instance_arn))
        return PodBundle.from_json(body["Body"].read())

    def delete(self, pod_uid: str) -> None:
        """Delete every bundle of a pod, one per instance it had; none left is not an error."""
        prefix = f"{self.prefix}{pod_uid}/"
        with aws_call(f"deleting the bundles of pod {pod_uid}"):
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            # At most 1000 keys per page, which is also DeleteObjects' limit.
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if not keys:
                    continue
                answer = self._s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                # DeleteObjects answers 200 and lists the keys it could not delete.
                for failed in answer.get("Errors", []):
                    raise AwsError(
                        f"deleting the bundle {failed.get('Key')} of pod {pod_uid} failed: "
                        f"{failed.get('Message')}",
                        code=str(failed.get("Code", "")),
                        operation="DeleteObjects",
                    )
                log.debug("deleted %d bundle(s) of pod %s", len(keys), pod_uid)
