"""The boto3 clients ORCA uses, configured once and shared.

boto3 clients are thread-safe; sessions are not. So one :class:`AwsClients`
holds one session and creates each client at most once, under a lock, on first
use; the controller's threads share the clients.

Retries are botocore's: ``adaptive`` mode retries throttled and transient errors
with exponential backoff and jitter and also slows the client down when AWS
throttles it. ORCA adds no retry loop of its own on top (two layers of retries
multiply). The endpoint comes from ``endpoint_url`` when given, else from
boto3's own ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables,
which is how the local AWS stand-in is reached without any ORCA-specific switch.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

import boto3
from botocore.config import Config

from orca import __version__

RetryMode = Literal["adaptive", "standard"]

# SQS long polling waits up to 20 s for messages, so reads must outlast it.
_LONG_POLL_SECONDS = 20


class AwsClients:
    """Lazily created ec2, sqs, s3 and logs clients for one region."""

    def __init__(
        self,
        region: str,
        *,
        endpoint_url: str | None = None,
        retry_mode: RetryMode = "adaptive",
        max_attempts: int = 5,
        connect_timeout: float = 5.0,
        read_timeout: float = _LONG_POLL_SECONDS + 10.0,
        session: boto3.Session | None = None,
    ) -> None:
        if read_timeout <= _LONG_POLL_SECONDS:
            raise ValueError(
                f"read_timeout {read_timeout}s must exceed the {_LONG_POLL_SECONDS}s SQS long poll"
            )
        self.region = region
        self.endpoint_url = endpoint_url
        self._session = session or boto3.Session(region_name=region)
        self._config = Config(
            region_name=region,
            retries={"mode": retry_mode, "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            user_agent_extra=f"orca/{__version__}",
        )
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> Any:
        """The one client for ``service``, created on first use."""
        with self._lock:
            if service not in self._clients:
                config = self._config
                # A local endpoint is an IP or localhost: bucket names cannot be host names.
                if service == "s3" and self._custom_endpoint():
                    config = config.merge(Config(s3={"addressing_style": "path"}))
                self._clients[service] = self._session.client(
                    service, endpoint_url=self.endpoint_url, config=config
                )
            return self._clients[service]

    def close(self) -> None:
        """Close every client's connection pool; a later call creates fresh clients."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for made in clients:
            made.close()

    def _custom_endpoint(self) -> bool:
        return bool(
            self.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def sqs(self) -> Any:
        return self.client("sqs")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def logs(self) -> Any:
        return self.client("logs")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")
