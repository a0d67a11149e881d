"""The heartbeat object in S3: the runtime writes it, the agents read it.

See :mod:`orca.heartbeat` for why it exists. The object carries no secret, so it
relies on the bucket's default encryption (the stack's KMS key) rather than
naming one. Without ``s3:ListBucket`` (which neither role has) S3 answers a read
of a missing key with AccessDenied rather than NoSuchKey; the agent treats both
alike, as no heartbeat.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from orca.aws.bundles import parse_s3_url
from orca.aws.errors import aws_call
from orca.heartbeat import Heartbeat, heartbeat_key

log = logging.getLogger(__name__)


class HeartbeatStore:
    """One department's heartbeat object."""

    def __init__(self, s3_client: Any, bucket: str, key: str) -> None:
        self._s3 = s3_client
        self.bucket = bucket
        self.key = key

    @classmethod
    def of_department(
        cls, s3_client: Any, bucket: str, cluster: str, department: str
    ) -> HeartbeatStore:
        """The store the runtime of ``cluster``/``department`` writes."""
        return cls(s3_client, bucket, heartbeat_key(cluster, department))

    @classmethod
    def at(cls, s3_client: Any, url: str) -> HeartbeatStore:
        """The store of the heartbeat at an ``s3://bucket/key`` URL (the agent's view)."""
        return cls(s3_client, *parse_s3_url(url))

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def put(self, heartbeat: Heartbeat) -> None:
        with aws_call(f"writing the runtime heartbeat {self.url}"):
            self._s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=heartbeat.to_json().encode(),
                ContentType="application/json",
            )

    def get(self) -> Heartbeat:
        """The heartbeat as last written; raises AwsError (NotFoundError when there is none)
        and ValueError when the object is not a heartbeat."""
        with aws_call(f"reading the runtime heartbeat {self.url}"):
            body = self._s3.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        try:
            return Heartbeat.from_json(body)
        except ValidationError as e:
            raise ValueError(f"{self.url} is not an ORCA heartbeat: {e}") from e
