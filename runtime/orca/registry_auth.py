"""Registry credentials: a pod's imagePullSecrets, and the Docker config the agent pulls with.

The runtime reads the pod's ``imagePullSecrets`` (types ``kubernetes.io/dockerconfigjson``,
key ``.dockerconfigjson``, and the legacy ``kubernetes.io/dockercfg``, key ``.dockercfg``,
which is the ``auths`` map alone) into one map of registry -> credential that travels in
the encrypted bundle. On the instance, the agent writes, for each pull, a Docker config
holding only the credential that matches the image, in a private directory named by
``DOCKER_CONFIG``, so no credential reaches a command line or a log.

Matching follows the kubelet's credential keyring: a key is a host (``*`` matches one
DNS label, as in ``*.registry.example.edu``) with an optional port and path prefix; the
scheme is ignored; Docker Hub's keys (``https://index.docker.io/v1/``, ``docker.io``...)
match images without a registry host. The docker CLI looks credentials up by the image's
registry host alone, so the written config is keyed by that host.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
PULL_SECRET_KEYS = {DOCKER_CONFIG_JSON: ".dockerconfigjson", DOCKER_CFG: ".dockercfg"}
# The key under which the docker CLI looks up Docker Hub's credentials.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = ("index.docker.io", "docker.io", "registry-1.docker.io")
# ECR private registries: <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn].
ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$"
)

# An image reference as Docker parses one: [host[:port]/]path[:tag][@digest], the path's
# components in lowercase (distribution/reference's grammar).
_HOST = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = (
    rf"^(?:{_HOST}(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    rf"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@{_DIGEST})?$"
)

Credential = dict[str, str]


class InvalidPullSecret(ValueError):
    """A pull secret of the wrong type or without parsable Docker credentials."""


def credentials_from_secret(
    name: str, secret_type: str | None, data: Mapping[str, bytes]
) -> dict[str, Credential]:
    """Registry -> credential (``auth`` and, when given, ``identitytoken``) of one secret."""
    key = PULL_SECRET_KEYS.get(secret_type or "")
    if key is None or key not in data:
        raise InvalidPullSecret(
            f"imagePullSecret {name!r} is of type {secret_type!r} without the matching key; "
            f"expected {DOCKER_CONFIG_JSON} with {PULL_SECRET_KEYS[DOCKER_CONFIG_JSON]} or "
            f"{DOCKER_CFG} with {PULL_SECRET_KEYS[DOCKER_CFG]}"
        )
    try:
        parsed = json.loads(data[key])
    except ValueError as e:
        raise InvalidPullSecret(f"imagePullSecret {name!r}: {key} is not JSON") from e
    auths = parsed.get("auths") if secret_type == DOCKER_CONFIG_JSON else parsed
    if not isinstance(auths, dict):
        raise InvalidPullSecret(f"imagePullSecret {name!r}: {key} has no auths")
    return {registry: _credential(entry) for registry, entry in auths.items() if entry}


def _credential(entry: Mapping[str, Any]) -> Credential:
    credential: Credential = {}
    if entry.get("auth"):
        credential["auth"] = str(entry["auth"])
    elif entry.get("username") is not None:
        pair = f"{entry['username']}:{entry.get('password', '')}"
        credential["auth"] = base64.b64encode(pair.encode()).decode()
    if entry.get("identitytoken"):
        credential["identitytoken"] = str(entry["identitytoken"])
    return credential


def merge(into: dict[str, Credential], more: Mapping[str, Credential]) -> None:
    """Earlier secrets win for a registry named twice, as the kubelet tries them in order."""
    for registry, credential in more.items():
        into.setdefault(registry, credential)


def image_registry(image: str) -> tuple[str, str]:
    """``(host, repository path)`` of an image reference; Docker Hub's host is docker.io."""
    name = image.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name if rest else f"library/{name}"
    path = path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path
    return host, path


def docker_config_key(host: str) -> str:
    """The key the docker CLI looks a registry host's credential up by."""
    return DOCKER_HUB_KEY if host in _DOCKER_HUB_HOSTS else host


def credential_for(image: str, credentials: Mapping[str, Credential]) -> Credential | None:
    """The first credential whose key matches the image, as the kubelet's keyring matches."""
    host, path = image_registry(image)
    for key, credential in credentials.items():
        if _matches(key, host, path):
            return credential
    return None


def _matches(key: str, host: str, path: str) -> bool:
    bare = re.sub(r"^[a-z]+://", "", key.strip()).rstrip("/")
    key_host, _, key_path = bare.partition("/")
    if key_host in _DOCKER_HUB_HOSTS:
        # Docker Hub's legacy key carries its API version as a path: not a repository.
        return host in _DOCKER_HUB_HOSTS
    key_name, _, key_port = key_host.partition(":")
    image_name, _, image_port = host.partition(":")
    if key_port != image_port:
        return False
    key_labels, image_labels = key_name.split("."), image_name.split(".")
    if len(key_labels) != len(image_labels):
        return False
    if not all(fnmatch.fnmatchcase(i, k) for k, i in zip(key_labels, image_labels, strict=True)):
        return False
    return not key_path or path == key_path or path.startswith(key_path + "/")


def ecr_registry(image: str) -> tuple[str, str] | None:
    """``(account, region)`` of an image in a private ECR registry, else None."""
    match = ECR_HOST.match(image_registry(image)[0])
    return (match["account"], match["region"]) if match else None


def docker_config(image: str, credential: Credential) -> str:
    """A Docker ``config.json`` holding one credential for the image's registry host."""
    key = docker_config_key(image_registry(image)[0])
    return json.dumps({"auths": {key: dict(credential)}})
