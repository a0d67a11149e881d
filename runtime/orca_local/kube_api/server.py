"""The emulator as a server object: start it on a loopback port, point clients at ``url``.

Tests use it in-process (``with KubeApiServer() as api: ...``); the demo runs it with
``python -m orca_local.kube_api``. ``write_kubeconfig`` writes the file ``kubectl`` and the
kubernetes client read: plain HTTP, no credentials, as a local development cluster would be.
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from .handler import ApiHandler
from .logs import KubeletTLS
from .objects import Registry
from .store import Store
from .tokens import TokenIssuer

log = logging.getLogger(__name__)


@dataclass
class ApiState:
    """What every request handler shares."""

    registry: Registry
    tokens: TokenIssuer
    kubelet_tls: KubeletTLS = field(default_factory=KubeletTLS)
    bookmark_interval: float = 30.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many clients (informers, kubectl) open watches at once.
    request_queue_size = 128
    state: ApiState

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request (a watch closed on shutdown) is routine.
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("client %s hung up", client_address)
            return
        super().handle_error(request, client_address)


class KubeApiServer:
    """A Kubernetes API server emulator listening on ``host:port`` (port 0: any free one).

    ``watch_window`` bounds the watch event history (older resourceVersions get 410 Gone);
    ``bookmark_interval`` is how long a quiet watch waits before sending a BOOKMARK;
    ``max_token_seconds`` caps service-account tokens (the server's
    ``--service-account-max-token-expiration``; None: no cap).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        kubelet_tls: KubeletTLS | None = None,
        watch_window: int = 1000,
        bookmark_interval: float = 30.0,
        max_token_seconds: int | None = None,
    ) -> None:
        self.store = Store(window=watch_window)
        self.registry = Registry(self.store)
        self._httpd = _Server((host, port), ApiHandler)
        self.tokens = TokenIssuer(self.store, max_token_seconds)
        self._httpd.state = ApiState(
            self.registry, self.tokens, kubelet_tls or KubeletTLS(), bookmark_interval
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeApiServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="kube-api", daemon=True
        )
        self._thread.start()
        log.info("Kubernetes API emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        self.store.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        log.info("Kubernetes API emulator on %s stopped", self.url)

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def write_kubeconfig(path: str | Path, url: str, namespace: str = "default") -> Path:
    """Write a kubeconfig for ``url`` (no auth, plain HTTP) and return its path."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "orca-local", "cluster": {"server": url}}],
        "users": [{"name": "orca-local", "user": {}}],
        "contexts": [
            {
                "name": "orca-local",
                "context": {"cluster": "orca-local", "user": "orca-local", "namespace": namespace},
            }
        ],
        "current-context": "orca-local",
        "preferences": {},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
