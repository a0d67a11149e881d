"""The HTTP layer: requests in, JSON (or chunked watch and log streams) out.

Each request runs on its own thread (``ThreadingHTTPServer``); the connection is HTTP/1.1
with keep-alive, as clients pool connections. Errors leave as ``Status`` bodies with the
matching HTTP code. Tables are served when the Accept header asks for ``as=Table``.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from . import discovery, errors, logs, routing, watch
from .errors import ApiError
from .routing import Route
from .tables import to_table

if TYPE_CHECKING:
    from .server import ApiState

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class ApiHandler(BaseHTTPRequestHandler):
    """Routes one request to discovery, a resource verb, a watch or a log stream."""

    protocol_version = "HTTP/1.1"
    server_version = "orca-local-kube-api"

    @property
    def state(self) -> ApiState:
        return self.server.state  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # Plumbing.

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        self.body = self._read_body()
        try:
            route = routing.parse(url.path)
            if route is None:
                self._non_resource(method, url.path)
            else:
                self._resource(method, route)
        except ApiError as e:
            self._send_json(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            log.exception("%s %s failed", method, self.path)
            self._send_json(500, ApiError(500, "InternalError", f"internal error: {e}").status())

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Obj:
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if ctype not in ("application/json", "*/*", ""):
            # Protobuf and CBOR bodies are refused; clients retry with JSON after a 415.
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json, application/yaml; got {ctype}",
            )
        try:
            body = json.loads(self.body or b"{}")
        except ValueError as e:
            raise errors.bad_request(f"the request body is not valid JSON: {e}") from e
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return body

    def _q(self, key: str, default: str = "") -> str:
        return self.query.get(key, [default])[-1]

    def _send_json(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _wants_table(self) -> bool:
        return "as=Table" in (self.headers.get("Accept") or "")

    # Non-resource paths.

    def _non_resource(self, method: str, path: str) -> None:
        path = path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if method == "GET" and path in ("/openapi/v2", "/swagger-2.0.0.pb-v1"):
            return self._openapi_v2()
        doc: Obj | None = None
        parts = [p for p in path.split("/") if p]
        if method == "GET":
            if path == "/version":
                doc = discovery.version()
            elif path == "/api":
                doc = discovery.core_versions()
            elif path == "/openapi/v3":
                doc = {"paths": {}}
            elif path == "/apis":
                doc = discovery.group_list()
            elif parts == ["api", "v1"]:
                doc = discovery.resource_list("", "v1")
            elif len(parts) == 2 and parts[0] == "apis":
                doc = discovery.group(parts[1])
            elif len(parts) == 3 and parts[0] == "apis":
                doc = discovery.resource_list(parts[1], parts[2])
        if doc is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._send_json(200, doc)

    def _openapi_v2(self) -> None:
        # kubectl downloads the v2 document (always as protobuf) before validating or
        # applying. A document without definitions makes it skip client-side schema checks
        # and compute strategic merge patches from its built-in types, as it does for any
        # kind the server publishes no schema for. The bytes are field 1 (swagger) = "2.0".
        data = b"\x0a\x032.0"
        self.send_response(200)
        self.send_header(
            "Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        )
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # Resource verbs.

    def _resource(self, method: str, route: Route) -> None:
        rt, reg = route.rt, self.state.registry
        ns = route.namespace or ""
        if rt.namespaced and route.name is not None and route.namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        dry_run = bool(self.query.get("dryRun"))

        if method == "GET" and (route.watch or watch.parse_bool(self._q("watch"))):
            return self._watch(route)
        if route.subresource == "log":
            return self._logs(route)
        if method == "GET" and route.name is None:
            return self._list(route)
        if method == "GET":
            obj = reg.get(rt, ns, route.name or "")
            if self._wants_table():
                obj = to_table(rt, [obj], obj["metadata"]["resourceVersion"], self._include())
            return self._send_json(200, obj)
        if method == "POST" and route.subresource == "binding":
            reg.bind(rt, ns, route.name or "", self._json_body())
            return self._send_json(
                201,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "code": 201,
                },
            )
        if method == "POST" and route.subresource == "token":
            token = self.state.tokens.request(ns, route.name or "", self._json_body())
            return self._send_json(201, token)
        if method == "POST" and route.name is None:
            return self._send_json(201, reg.create(rt, ns, self._json_body(), dry_run))
        if method == "PUT" and route.name:
            obj = reg.update(rt, ns, route.name, self._json_body(), route.subresource, dry_run)
            return self._send_json(200, obj)
        if method == "PATCH" and route.name:
            ctype = self.headers.get("Content-Type") or ""
            obj, created = reg.patch(
                rt, ns, route.name, self.body, ctype, route.subresource, dry_run
            )
            return self._send_json(201 if created else 200, obj)
        if method == "DELETE" and route.name and route.subresource is None:
            return self._send_json(200, reg.delete(rt, ns, route.name, self._delete_options()))
        if method == "DELETE" and route.name is None:
            return self._delete_collection(route)
        raise errors.method_not_allowed(self.path)

    def _include(self) -> str:
        return self._q("includeObject", "Metadata")

    def _delete_options(self) -> Obj:
        options = self._json_body() if self.body else {}
        if "gracePeriodSeconds" in self.query:
            options["gracePeriodSeconds"] = int(self._q("gracePeriodSeconds"))
        if self.query.get("dryRun"):
            options["dryRun"] = ["All"]
        return options

    def _list(self, route: Route) -> None:
        rt = route.rt
        items, rv = self.state.registry.list(
            rt, route.namespace, self._q("labelSelector") or None, self._q("fieldSelector") or None
        )
        meta: Obj = {"resourceVersion": str(rv)}
        # Paging by offset; the continue token records where the previous page ended.
        start = 0
        if self._q("continue"):
            try:
                start = int(json.loads(base64.b64decode(self._q("continue")))["start"])
            except (ValueError, KeyError, TypeError) as e:
                raise errors.bad_request("continue key is not valid") from e
        limit = int(self._q("limit") or 0)
        if limit > 0 and start + limit < len(items):
            token = {"rv": rv, "start": start + limit}
            meta["continue"] = base64.b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
            items = items[start : start + limit]
        else:
            items = items[start:]
        if self._wants_table():
            table = to_table(rt, items, str(rv), self._include())
            table["metadata"] = meta
            return self._send_json(200, table)
        self._send_json(
            200,
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": meta,
                "items": items,
            },
        )

    def _delete_collection(self, route: Route) -> None:
        reg, rt = self.state.registry, route.rt
        items, rv = reg.list(
            rt, route.namespace, self._q("labelSelector") or None, self._q("fieldSelector") or None
        )
        options = self._delete_options()
        deleted = []
        for obj in items:
            meta = obj["metadata"]
            try:
                deleted.append(reg.delete(rt, meta.get("namespace", ""), meta["name"], options))
            except ApiError as e:
                if e.code != 404:
                    raise
        self._send_json(
            200,
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(rv)},
                "items": deleted,
            },
        )

    def _watch(self, route: Route) -> None:
        p = watch.params(self.query, self._wants_table())
        # Selector errors are plain 400s before the stream starts, as on a real server.
        self.state.registry.matcher(route.rt, p.labels, p.fields)
        self._start_stream("application/json")
        try:
            watch.stream(
                self.state.registry,
                route,
                p,
                lambda event: self._chunk(watch.encode(event)),
                self.state.bookmark_interval,
            )
        except ApiError as e:
            self._chunk(watch.encode({"type": "ERROR", "object": e.status()}))
        self._end_stream()

    def _logs(self, route: Route) -> None:
        reg = self.state.registry
        if self.command != "GET" or not route.name:
            raise errors.method_not_allowed(self.path)
        pod = reg.get(route.rt, route.namespace or "", route.name)
        container = logs.pick_container(pod, self._q("container") or None)
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise errors.bad_request(f"pod {route.name} does not have a host assigned")
        node = reg.store.get(("", "nodes"), ("", node_name))
        if node is None:
            raise errors.not_found("", "nodes", node_name)

        response = logs.open_logs(node, pod, container, self.query, self.state.kubelet_tls)
        try:
            self._start_stream(response.getheader("Content-Type") or "text/plain")
            while True:
                data = response.read1(65536)
                if not data:
                    break
                self._chunk(data)
            self._end_stream()
        finally:
            response.close()
