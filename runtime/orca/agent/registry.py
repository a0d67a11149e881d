"""Registry credentials for the agent's pulls: the pod's pull secrets, else ECR's token.

For each pull the agent writes a Docker ``config.json`` holding only the credential
for that image's registry into the pod's private directory (0700, file 0600) and
runs ``docker pull`` with ``DOCKER_CONFIG`` naming it, so credentials reach neither
a command line nor a log. The credential is the first of the pod's
``imagePullSecrets`` that matches the image (:mod:`orca.registry_auth`); an image in a
private ECR registry that no pull secret covers is pulled with a token from
``ecr:GetAuthorizationToken`` under the instance's role. ECR tokens last 12 hours, so
one is reused for 11 and then fetched again (a restarted container may pull again).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from orca import registry_auth
from orca.aws.clients import AwsClients
from orca.aws.errors import aws_call
from orca.registry_auth import Credential

log = logging.getLogger(__name__)

ECR_TOKEN_REUSE_SECONDS = 11 * 3600


def ecr_client(region: str) -> Any:
    """An ECR client for the registry's region, with the instance role's credentials."""
    return AwsClients(region).client("ecr")


class PullCredentials:
    """Chooses and writes the credential for each image of one pod."""

    def __init__(
        self,
        directory: str,
        credentials: Mapping[str, Credential],
        ecr: Callable[[str], Any] = ecr_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.credentials = dict(credentials)
        self._ecr = ecr
        self._clock = clock
        self._ecr_tokens: dict[tuple[str, str], tuple[float, Credential]] = {}
        self._lock = threading.Lock()

    def credential(self, image: str) -> Credential | None:
        found = registry_auth.credential_for(image, self.credentials)
        if found is not None:
            return found
        registry = registry_auth.ecr_registry(image)
        return self._ecr_token(*registry) if registry else None

    def config_dir(self, image: str) -> str | None:
        """A DOCKER_CONFIG directory with the image's credential; None when it has none.

        One directory per registry: a pod's containers pull at once, and a config shared
        between registries could hand one pull another registry's credential.
        """
        credential = self.credential(image)
        if credential is None:
            return None
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)
        registry = registry_auth.image_registry(image)[0]
        directory = os.path.join(self.directory, re.sub(r"[^A-Za-z0-9._-]", "_", registry))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, "config.json")
        temporary = path + ".new"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(registry_auth.docker_config(image, credential))
        os.replace(temporary, path)
        return directory

    def _ecr_token(self, account: str, region: str) -> Credential:
        with self._lock:
            cached = self._ecr_tokens.get((account, region))
            if cached and self._clock() - cached[0] < ECR_TOKEN_REUSE_SECONDS:
                return cached[1]
            with aws_call(f"getting an ECR token for registry {account} in {region}"):
                answer = self._ecr(region).get_authorization_token(registryIds=[account])
            # The token is base64 of "AWS:<password>": the auth field of a Docker config.
            credential = {"auth": str(answer["authorizationData"][0]["authorizationToken"])}
            self._ecr_tokens[(account, region)] = (self._clock(), credential)
            log.info("got an ECR token for registry %s in %s", account, region)
            return credential
