"""TLS and client authentication for the runtime's kubelet API, as a kubelet does them.

A kubelet serves HTTPS with its serving certificate and, started with
``--client-ca-file``, authenticates callers by a client certificate signed by
that CA: the certificate's CN is the user, its O entries the groups. The API
server calls it with its ``apiserver-kubelet-client`` certificate (kubeadm
names it CN ``kube-apiserver-kubelet-client``) to proxy ``kubectl logs``.

The handshake asks for a client certificate without demanding one
(``CERT_OPTIONAL``): a certificate that is given must chain to the CA or the
handshake fails, and a caller without one reaches the HTTP layer, where it gets
the kubelet's ``401 Unauthorized``. A known identity that is not allowed gets
``403 Forbidden``. Instead of a SubjectAccessReview per request (a kubelet's
webhook authorization), the allowed identities are a list in the settings.

``kubelet_insecure_allow_any_client`` turns authentication off: every caller
is served. It exists for local use only (a laptop's API emulator with no CA),
and the runtime says so in its log when it is on.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_ALLOWED_CLIENTS = ("kube-apiserver-kubelet-client", "system:kube-apiserver")


class KubeletTlsError(Exception):
    """The kubelet API cannot serve with the TLS files it was given."""


@dataclass(frozen=True)
class Identity:
    """Who called, from a verified client certificate: user (CN) and groups (O)."""

    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What to answer a caller: 200 to go on, else 401 or 403 with the kubelet's text."""

    status: int
    message: str
    identity: Identity | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200


def server_context(cert_file: Path, key_file: Path, client_ca_file: Path | None) -> ssl.SSLContext:
    """The server side of the kubelet API's TLS; without a client CA no certificate is asked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as e:
        raise KubeletTlsError(
            f"cannot load the kubelet serving certificate {cert_file} with key {key_file}: {e}; "
            "check ORCA_KUBELET_TLS_CERT_FILE and ORCA_KUBELET_TLS_KEY_FILE"
        ) from e
    if client_ca_file is None:
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        context.load_verify_locations(cafile=str(client_ca_file))
    except (OSError, ssl.SSLError) as e:
        raise KubeletTlsError(
            f"cannot load the client CA {client_ca_file}: {e}; "
            "check ORCA_KUBELET_CLIENT_CA_FILE (the cluster CA, as kubelet --client-ca-file)"
        ) from e
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def identity_of(peer_cert: dict[str, Any] | None) -> Identity | None:
    """The identity in a certificate as ``SSLSocket.getpeercert()`` returns it, if any."""
    if not peer_cert:
        return None
    user = ""
    groups: list[str] = []
    for rdn in peer_cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = str(value)
            elif key == "organizationName":
                groups.append(str(value))
    return Identity(user, tuple(groups)) if user else None


def authorize(
    peer_cert: dict[str, Any] | None,
    allowed: Collection[str],
    *,
    insecure: bool = False,
    subresource: str = "log",
) -> Decision:
    """Whether a caller with ``peer_cert`` may use the kubelet API (401/403 as a kubelet)."""
    if insecure:
        return Decision(200, "ok")
    identity = identity_of(peer_cert)
    if identity is None:
        return Decision(401, "Unauthorized")
    if identity.user in allowed or any(group in allowed for group in identity.groups):
        return Decision(200, "ok", identity)
    return Decision(
        403,
        f"Forbidden (user={identity.user}, verb=get, resource=nodes, subresource={subresource})",
        identity,
    )
