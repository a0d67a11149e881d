"""Pods bound to one node, and what a kubelet may change on them."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from orca.kube.client import body

log = logging.getLogger(__name__)

Pod = dict[str, Any]


class WatchExpired(Exception):
    """The API server no longer has history for the resourceVersion (410 Gone): relist."""


class PodApi:
    def __init__(self, api_client: client.ApiClient, node_name: str) -> None:
        self.core = client.CoreV1Api(api_client)
        self.node_name = node_name
        self._selector = f"spec.nodeName={node_name}"

    def list(self) -> tuple[list[Pod], str]:
        """Every pod bound to the node, and the list's resourceVersion to watch from."""
        response = self.core.list_pod_for_all_namespaces(
            field_selector=self._selector, _preload_content=False
        )
        pods = body(response)
        return pods["items"], pods["metadata"]["resourceVersion"]

    def watch(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, Pod]]:
        """Changes after ``resource_version``; raises :class:`WatchExpired` on 410."""
        stream = watch.Watch().stream(
            self.core.list_pod_for_all_namespaces,
            field_selector=self._selector,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            allow_watch_bookmarks=True,
            deserialize=False,
        )
        try:
            for event in stream:
                yield event["type"], event["object"]
        except ApiException as e:
            # With a timeout set, the client raises the stream's ERROR event as-is.
            if e.status == 410:
                raise WatchExpired(str(e.reason)) from e
            raise

    def get(self, namespace: str, name: str) -> Pod | None:
        try:
            response = self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            return body(response)  # type: ignore[no-any-return]
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def annotate(self, pod: Pod, annotations: Mapping[str, str | None]) -> Pod:
        """Merge ``annotations`` into the pod's (None removes one)."""
        meta = pod["metadata"]
        patch = {"metadata": {"annotations": dict(annotations)}}
        return body(  # type: ignore[no-any-return]
            self.core.patch_namespaced_pod(
                meta["name"], meta["namespace"], patch, _preload_content=False
            )
        )

    def patch_status(self, pod: Pod, status: Mapping[str, Any]) -> Pod:
        meta = pod["metadata"]
        return body(  # type: ignore[no-any-return]
            self.core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": dict(status)}, _preload_content=False
            )
        )

    def release(self, pod: Pod) -> None:
        """Remove a pod object that is being deleted, as a kubelet does once it has stopped.

        The uid precondition keeps a same-named successor pod safe.
        """
        meta = pod["metadata"]
        options = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
        )
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options)
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return body(  # type: ignore[no-any-return]
                self.core.read_namespaced_config_map(name, namespace, _preload_content=False)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return body(  # type: ignore[no-any-return]
                self.core.read_namespaced_secret(name, namespace, _preload_content=False)
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def request_token(
        self, namespace: str, service_account: str, spec: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """A TokenRequest for the service account (as a kubelet makes for projected tokens);
        its status (``token``, ``expirationTimestamp``), or None if the account is missing."""
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": dict(spec),
        }
        try:
            response = self.core.create_namespaced_service_account_token(
                service_account, namespace, request, _preload_content=False
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return body(response)["status"]  # type: ignore[no-any-return]
