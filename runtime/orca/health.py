"""The runtime's plain-HTTP endpoint for probes and Prometheus.

``/healthz`` answers 200 while the runtime's loops are alive, ``/readyz`` once
the node is registered and the pods on it have been listed, ``/metrics`` in
Prometheus' text format. It serves no pod data, so it needs no authentication;
the kubelet API (``kubectl logs``) is the authenticated one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class HealthServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "0.0.0.0",
        port: int = 8080,
    ) -> None:
        checks = {"/healthz": alive, "/readyz": ready}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path in checks:
                    ok = checks[path]()
                    self._answer(200 if ok else 503, b"ok\n" if ok else b"not yet\n")
                else:
                    self._answer(404, b"not found; try /healthz, /readyz or /metrics\n")

            def _answer(self, code: int, body: bytes, kind: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("health endpoint: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        log.info("health and metrics on port %d (/healthz, /readyz, /metrics)", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
