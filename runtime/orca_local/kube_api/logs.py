"""``pods/{name}/log``: proxied to the kubelet API of the pod's node, as the real server does.

The API server finds the node's InternalIP and kubelet port in the Node's status, connects
over HTTPS (presenting its apiserver-kubelet-client certificate when configured, verifying the
kubelet's serving certificate against ``--kubelet-ca`` or not at all, as with
``--kubelet-insecure-tls``) and streams ``/containerLogs/<ns>/<pod>/<container>`` back.
"""

from __future__ import annotations

import http.client
import logging
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

log = logging.getLogger(__name__)
Obj = dict[str, Any]

# Query parameters of PodLogOptions that the kubelet understands.
_FORWARDED = (
    "follow",
    "previous",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "tailLines",
    "limitBytes",
    "insecureSkipTLSVerifyBackend",
    "stream",
)
_ADDRESS_PREFERENCE = ("InternalIP", "Hostname", "InternalDNS", "ExternalDNS", "ExternalIP")
_DEFAULT_KUBELET_PORT = 10250


@dataclass(frozen=True)
class KubeletTLS:
    """How the emulator talks TLS to kubelets."""

    client_cert: str | None = None
    client_key: str | None = None
    ca_file: str | None = None

    def context(self) -> ssl.SSLContext:
        if self.ca_file:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
        return ctx


def pick_container(pod: Obj, requested: str | None) -> str:
    """The container whose logs are asked for, with the real server's 400s otherwise."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    if not requested:
        if len(containers) == 1:
            return str(containers[0])
        raise bad_request(
            f"a container name must be specified for pod {name}, choose one of: "
            f"[{' '.join(containers)}]"
            + (f" or one of the init containers: [{' '.join(init)}]" if init else "")
        )
    if requested not in containers + init:
        raise bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def kubelet_location(node: Obj) -> tuple[str, int]:
    """(host, port) of the node's kubelet API."""
    status = node.get("status") or {}
    addresses = status.get("addresses") or []
    for kind in _ADDRESS_PREFERENCE:
        for address in addresses:
            if address.get("type") == kind and address.get("address"):
                endpoint = (status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}
                port = int(endpoint.get("Port") or 0) or _DEFAULT_KUBELET_PORT
                return str(address["address"]), port
    known = ", ".join(f"{{{a.get('type')} {a.get('address')}}}" for a in addresses)
    raise ApiError(
        500, "InternalError", f"no preferred addresses found; known addresses: [{known}]"
    )


def open_logs(
    node: Obj,
    pod: Obj,
    container: str,
    query: dict[str, list[str]],
    tls: KubeletTLS,
) -> http.client.HTTPResponse:
    """Connect to the kubelet and return its response, body unread, for streaming."""
    host, port = kubelet_location(node)
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    forwarded = {k: v[-1] for k, v in query.items() if k in _FORWARDED}
    path = "/containerLogs/{}/{}/{}".format(
        *(urllib.parse.quote(p, safe="") for p in (ns, name, container))
    )
    if forwarded:
        path += "?" + urllib.parse.urlencode(forwarded)
    url = f"https://{host}:{port}{path}"
    conn = http.client.HTTPSConnection(host, port, context=tls.context(), timeout=30)
    try:
        conn.request("GET", path, headers={"Accept": "*/*"})
        response = conn.getresponse()
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        conn.close()
        log.warning("kubelet log request %s failed: %s", url, e)
        raise ApiError(500, "InternalError", f'Get "{url}": {e}') from e
    # A follow stream may stay quiet for long; only connecting is bounded.
    if conn.sock is not None:
        conn.sock.settimeout(None)
    if response.status >= 300:
        body = response.read().decode(errors="replace").strip()
        conn.close()
        raise ApiError(
            response.status,
            "BadRequest" if response.status == 400 else "InternalError",
            body or f"the kubelet at {host}:{port} answered {response.status}",
        )
    return response
