"""The pod-bundle store: each pod's resolved spec as one object in the envelope's bucket.

The runtime writes a pod's :class:`~orca.bundle.PodBundle` before launching its
instance and deletes it when the pod ends; the agent reads it at boot, which
only the department's instance role may do. Objects are encrypted with KMS
(``aws:kms``, the bucket's or the account's default key) because a bundle holds
resolved Secrets.
"""

from __future__ import annotations

import logging
from typing import Any

from orca.aws.errors import aws_call
from orca.bundle import PodBundle

log = logging.getLogger(__name__)


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

    def __init__(self, s3_client: Any, bucket: str, prefix: str = "bundles/") -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix

    def key(self, pod_uid: str) -> str:
        return f"{self.prefix}{pod_uid}.json"

    def url(self, pod_uid: str) -> str:
        return f"s3://{self.bucket}/{self.key(pod_uid)}"

    def put(self, bundle: PodBundle) -> str:
        """Store a bundle; returns its ``s3://`` URL for the instance's user data."""
        key = self.key(bundle.pod_uid)
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

    def get(self, url: str) -> PodBundle:
        """The bundle at ``url``; raises NotFoundError when it is gone."""
        bucket, key = parse_s3_url(url)
        with aws_call(f"reading the pod bundle {url}"):
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return PodBundle.from_json(body)

    def delete(self, pod_uid: str) -> None:
        """Delete a pod's bundle; deleting one that is gone is not an error (S3 semantics)."""
        with aws_call(f"deleting the bundle of pod {pod_uid}"):
            self._s3.delete_object(Bucket=self.bucket, Key=self.key(pod_uid))
