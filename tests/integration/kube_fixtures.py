"""Fixtures for tests against the Kubernetes API emulator: a server per test, a client, kubectl.

Test modules load them with ``pytest_plugins = ["tests.integration.kube_fixtures"]``, so the
shared ``conftest.py`` stays free of them.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from orca_local.kube_api import KubeApiServer, write_kubeconfig
from tests.integration.kube_helpers import Kubectl

KUBECTL = Path(sys.executable).parent / "kubectl"


@pytest.fixture
def kube_api() -> Iterator[KubeApiServer]:
    """An emulator on a free loopback port, with a small watch window and quick bookmarks."""
    with KubeApiServer("127.0.0.1", 0, watch_window=50, bookmark_interval=0.5) as server:
        yield server


@pytest.fixture
def api_client(kube_api: KubeApiServer) -> Iterator[client.ApiClient]:
    """A kubernetes ApiClient pointed at the emulator."""
    configuration = client.Configuration()
    configuration.host = kube_api.url
    api = client.ApiClient(configuration)
    yield api
    api.close()


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def kubeconfig(kube_api: KubeApiServer, tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", kube_api.url)


@pytest.fixture
def kubectl(kubeconfig: Path) -> Kubectl:
    """Run kubectl against the emulator; ``check=False`` to inspect a failure."""

    def run(*args: str, stdin: str | None = None, check: bool = True) -> Any:
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


class _FakeKubelet(BaseHTTPRequestHandler):
    """Answers /containerLogs/<ns>/<pod>/<container> with one line naming what was asked."""

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.split("/")
        if parts[1] != "containerLogs":
            self.send_error(404)
            return
        body = f"logs of {'/'.join(parts[2:])} query={url.query}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubelet")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "kubelet.crt", tmp_path / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def fake_kubelet(tmp_path: Path) -> Iterator[int]:
    """An HTTPS kubelet log endpoint on loopback with a self-signed cert; yields its port."""
    cert, key = _self_signed(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeKubelet)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join()
