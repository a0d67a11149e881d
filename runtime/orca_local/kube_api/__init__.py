"""A Kubernetes API server emulator, faithful where the ORCA runtime depends on it.

The official ``kubernetes`` client and ``kubectl`` talk to it over plain HTTP on loopback. It
keeps objects in memory with real resourceVersion, uid, 409 and 410 semantics, watches,
selectors, the status and binding subresources, graceful pod deletion, server-side printing
for ``kubectl get``, and proxies ``pods/log`` to the node's kubelet API.

Layers, bottom up: ``store`` (objects, resourceVersions, watch window), ``objects`` (REST
semantics), ``patching``/``defaults``/``selectors``/``tables`` (per-concern rules),
``handler`` with ``routing``, ``watch``, ``logs`` and ``discovery`` (HTTP), ``server``.
"""

from .logs import KubeletTLS
from .server import KubeApiServer, write_kubeconfig

__all__ = ["KubeApiServer", "KubeletTLS", "write_kubeconfig"]
