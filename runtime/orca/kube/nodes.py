"""The virtual node object and its heartbeat Lease in ``kube-node-lease``."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from orca.kube.client import body

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"


def _micro_time(moment: datetime) -> str:
    # Lease times are MicroTime: RFC 3339 with six fractional digits.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeApi:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    def register(self, node: dict[str, Any]) -> dict[str, Any]:
        """Create the node, or bring an existing one's labels, taints and status up to date."""
        name = node["metadata"]["name"]
        try:
            self.core.create_node(node, _preload_content=False)
            log.info("registered node %s", name)
        except ApiException as e:
            if e.status != 409:
                raise
            patch = {"metadata": {"labels": node["metadata"]["labels"]}, "spec": node["spec"]}
            self.core.patch_node(name, patch, _preload_content=False)
            log.info("node %s exists; updated its labels and taints", name)
        # The API server ignores status on create; it has its own subresource.
        return self.patch_status(name, node["status"])

    def patch_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return body(  # type: ignore[no-any-return]
            self.core.patch_node_status(name, {"status": status}, _preload_content=False)
        )

    def renew_lease(self, node: dict[str, Any], duration_seconds: int, now: datetime) -> None:
        """Create or renew the node's Lease, the heartbeat the node controller watches."""
        name = node["metadata"]["name"]
        try:
            lease = body(
                self.coordination.read_namespaced_lease(
                    name, LEASE_NAMESPACE, _preload_content=False
                )
            )
        except ApiException as e:
            if e.status != 404:
                raise
            lease = None

        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": _micro_time(now),
        }
        if lease is None:
            self.coordination.create_namespaced_lease(
                LEASE_NAMESPACE,
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": name,
                        "namespace": LEASE_NAMESPACE,
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": name,
                                "uid": node["metadata"]["uid"],
                            }
                        ],
                    },
                    "spec": spec,
                },
            )
            return
        # PUT with the resourceVersion just read: a concurrent writer makes this a 409,
        # and the next renewal (10 s later) reads afresh.
        lease["spec"].update(spec)
        self.coordination.replace_namespaced_lease(name, LEASE_NAMESPACE, lease)
