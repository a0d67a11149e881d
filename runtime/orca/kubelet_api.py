"""The runtime's kubelet API: ``kubectl logs`` for pods on the ORCA node, from CloudWatch Logs.

The API server answers ``pods/{name}/log`` by calling the kubelet of the pod's node at the
InternalIP and ``daemonEndpoints.kubeletEndpoint.Port`` the Node advertises, on
``/containerLogs/<namespace>/<pod>/<container>``. ORCA's node has no kubelet on an instance
the API server could reach, and the instance may already be gone; so the runtime serves this
path itself, reading the container's stream, which the agent ships to CloudWatch Logs
(:mod:`orca.aws.logs`). Callers are authenticated as a kubelet authenticates them
(:mod:`orca.kubelet_tls`).

The query parameters are those of PodLogOptions as the API server forwards them: ``follow``,
``tailLines``, ``sinceSeconds``/``sinceTime``, ``timestamps`` (each line prefixed with its
time in the kubelet's fixed nine-digit RFC 3339 form) and ``limitBytes``. A follow ends once
the container is terminated and its stream is drained, when the pod leaves the node, when the
client goes away, or when the runtime stops. ``/healthz`` answers ``ok`` to anyone (it is
for probes and tells nothing about pods); exec, attach, port-forward and run answer 501.

Log contents are never logged here; only which stream was served to whom.
"""

from __future__ import annotations

import logging
import select
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from orca.aws.errors import AwsError, NotFoundError
from orca.aws.logs import ContainerLogs, stream_name
from orca.kubelet_logs import (
    BadRequest,
    FollowEnd,
    Limit,
    LogRequest,
    container_names,
    container_state,
    format_line,
    limited,
    never_started,
    parse_log_query,
)
from orca.kubelet_tls import authorize, server_context
from orca.observed import Observed
from orca.settings import Settings

log = logging.getLogger(__name__)

PodLookup = Callable[[str, str], dict[str, Any] | None]

HANDSHAKE_SECONDS = 10.0
IO_SECONDS = 60.0
SYNC_WAIT_SECONDS = 5.0
_UNSUPPORTED = ("exec", "attach", "portForward", "run", "cri")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: KubeletApi) -> None:
        self.api = api
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake runs in the request's thread, so a slow client delays nobody else.
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            tls = self.api.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.info("kubelet API: TLS handshake with %s failed: %s", client_address[0], e)
            return
        try:
            tls.settimeout(IO_SECONDS)
            _Handler(tls, client_address, self)
        except OSError as e:
            log.debug("kubelet API: connection from %s ended: %s", client_address[0], e)
        except Exception:
            log.exception("kubelet API: a request from %s failed", client_address[0])
        finally:
            tls.close()


class _Handler(BaseHTTPRequestHandler):
    # One request per connection: the API server opens one per log request anyway.
    protocol_version = "HTTP/1.1"
    server: _Server

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        api = self.server.api
        if parts == ["healthz"]:
            self.reply(200, "ok")
            return
        decision = authorize(
            self.connection.getpeercert(),
            api.allowed_clients,
            insecure=api.insecure,
            subresource="log" if parts[0] == "containerLogs" else "proxy",
        )
        if not decision.allowed:
            log.info("kubelet API: %s %s refused: %s", self.command, url.path, decision.message)
            self.reply(decision.status, decision.message)
            return
        if parts[0] in _UNSUPPORTED:
            self.reply(
                501,
                f"{parts[0]} is not yet supported on ORCA node {api.node_name}; "
                "kubectl logs works, kubectl exec/attach/port-forward do not yet",
            )
            return
        if parts[0] != "containerLogs":
            self.reply(404, f"{url.path} is not served by ORCA's kubelet API")
            return
        if len(parts) != 4 or not all(parts[1:]):
            self.reply(400, "expected /containerLogs/<namespace>/<pod>/<container>")
            return
        try:
            request = parse_log_query(url.query, api.clock())
        except BadRequest as e:
            self.reply(400, str(e))
            return
        api.serve_logs(self, parts[1], parts[2], parts[3], request)

    def do_POST(self) -> None:
        self.do_GET()

    def reply(self, status: int, body: str | bytes) -> None:
        """A whole answer; text (an error, ``ok``) gets a final newline, log bytes are as is."""
        if isinstance(body, str):
            body = (body + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def client_gone(self) -> bool:
        # A log client sends nothing after its request, so a readable socket means it closed.
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("kubelet API %s: " + format, self.client_address[0], *args)


class KubeletApi:
    """The HTTPS server; :meth:`start` binds it, :attr:`port` is where it listens."""

    def __init__(
        self,
        *,
        node_name: str,
        context: ssl.SSLContext,
        find_pod: PodLookup,
        logs: ContainerLogs,
        pods_synced: threading.Event | None = None,
        host: str = "0.0.0.0",
        port: int = 10250,
        allowed_clients: Collection[str] = (),
        insecure: bool = False,
        follow_poll_seconds: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.node_name = node_name
        self.context = context
        self.find_pod = find_pod
        self.logs = logs
        self.pods_synced = pods_synced
        self.allowed_clients = frozenset(allowed_clients)
        self.insecure = insecure
        self.follow_poll_seconds = follow_poll_seconds
        self.clock = clock
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() first"
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        try:
            self._httpd = _Server(self._address, self)
        except OSError as e:
            raise OSError(
                f"the kubelet API cannot listen on {self._address[0]}:{self._address[1]}: {e}; "
                "free the port or set ORCA_KUBELET_PORT"
            ) from e
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.2,), name="kubelet-api", daemon=True
        )
        self._thread.start()
        if self.insecure:
            log.warning(
                "kubelet API on port %d serves logs to ANY client without a certificate "
                "(kubelet_insecure_allow_any_client); for local use only",
                self.port,
            )
        else:
            log.info("kubelet API listening on port %d for kubectl logs", self.port)

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_logs(
        self, out: _Handler, namespace: str, name: str, container: str, request: LogRequest
    ) -> None:
        """Answer one ``/containerLogs`` request on ``out``."""
        if self.pods_synced is not None and not self.pods_synced.wait(SYNC_WAIT_SECONDS):
            out.reply(503, f"ORCA node {self.node_name} is starting; try again in a moment")
            return
        pod = self.find_pod(namespace, name)
        if pod is None:
            out.reply(404, f'pod "{namespace}/{name}" is not on node {self.node_name}')
            return
        if container not in container_names(pod):
            out.reply(404, f'container "{container}" not found in pod "{namespace}/{name}"')
            return
        waiting = never_started(pod, container)
        if waiting is not None:
            out.reply(
                400,
                f'container "{container}" in pod "{name}" is waiting to start: {waiting}',
            )
            return

        uid = pod["metadata"]["uid"]
        stream = stream_name(namespace, name, uid, container)
        log.debug("kubelet API: serving %s (follow=%s)", stream, request.follow)
        if request.follow:
            self._follow(out, stream, namespace, name, uid, container, request)
            return
        try:
            lines = self.logs.read(stream, since=request.since, tail=request.tail_lines)
        except NotFoundError:
            lines = []  # the container has not written yet
        except AwsError as e:
            out.reply(500, f"reading the logs of {stream} from CloudWatch Logs failed: {e}")
            return
        out.reply(200, limited(lines, request))

    def _follow(
        self,
        out: _Handler,
        stream: str,
        namespace: str,
        name: str,
        uid: str,
        container: str,
        request: LogRequest,
    ) -> None:
        ended = FollowEnd(lambda: self._container_done(namespace, name, uid, container))
        limit = Limit(request.limit_bytes)
        out.start_stream()
        try:
            for line in self.logs.follow(
                stream,
                stop=lambda: self._stopping.is_set() or out.client_gone() or ended(),
                since=request.since,
                tail=request.tail_lines,
                poll_seconds=self.follow_poll_seconds,
            ):
                ended.saw_lines = True
                out.chunk(limit.take(format_line(line, request.timestamps)))
                if limit.spent:
                    break
            out.end_stream()
        except (BrokenPipeError, ConnectionError, TimeoutError, ssl.SSLError) as e:
            log.debug("kubelet API: follow of %s ended by the client: %s", stream, e)
        except AwsError as e:
            log.warning("kubelet API: follow of %s failed: %s", stream, e)
        out.close_connection = True

    def _container_done(self, namespace: str, name: str, uid: str, container: str) -> bool:
        pod = self.find_pod(namespace, name)
        if pod is None or pod["metadata"]["uid"] != uid:
            return True
        return container_state(pod, container)[0] == "terminated"


def build_kubelet_api(
    settings: Settings, observed: Observed, logs: ContainerLogs
) -> KubeletApi | None:
    """The kubelet API the settings describe; None (logged) when no serving certificate is set."""
    if settings.kubelet_tls_cert_file is None or settings.kubelet_tls_key_file is None:
        log.warning(
            "kubectl logs will not work for pods on %s: the kubelet API needs a serving "
            "certificate (ORCA_KUBELET_TLS_CERT_FILE, ORCA_KUBELET_TLS_KEY_FILE) and the "
            "client CA (ORCA_KUBELET_CLIENT_CA_FILE)",
            settings.node_name,
        )
        return None
    client_ca = (
        None if settings.kubelet_insecure_allow_any_client else settings.kubelet_client_ca_file
    )
    context = server_context(
        settings.kubelet_tls_cert_file, settings.kubelet_tls_key_file, client_ca
    )
    return KubeletApi(
        node_name=settings.node_name,
        context=context,
        find_pod=observed.pod_named,
        logs=logs,
        pods_synced=observed.pods_synced,
        host=settings.listen_address,
        port=settings.kubelet_port,
        allowed_clients=settings.kubelet_allowed_clients,
        insecure=settings.kubelet_insecure_allow_any_client,
    )
