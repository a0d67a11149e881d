"""A local certificate authority for the kubelet API, as a cluster's PKI would provide it.

In a cluster the CA signs two certificates this pair of parties needs: the API server's
``apiserver-kubelet-client`` certificate (CN ``kube-apiserver-kubelet-client``, O
``system:masters``), which it presents when it proxies ``kubectl logs`` to a kubelet, and
the kubelet's serving certificate, which the API server checks against ``--kubelet-ca``.
:func:`create_kubelet_pki` makes the same three on disk for the local stand-ins: the
emulator gets the client certificate and the CA, the runtime its serving certificate and
the CA as its client CA. Keys are P-256 and written owner-readable only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

APISERVER_CLIENT_CN = "kube-apiserver-kubelet-client"
APISERVER_CLIENT_GROUP = "system:masters"
VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True)
class KubeletPki:
    """Where the local kubelet PKI's files are."""

    ca_cert: Path
    ca_key: Path
    kubelet_cert: Path
    kubelet_key: Path
    apiserver_client_cert: Path
    apiserver_client_key: Path

    @classmethod
    def in_directory(cls, directory: Path) -> KubeletPki:
        return cls(
            ca_cert=directory / "ca.crt",
            ca_key=directory / "ca.key",
            kubelet_cert=directory / "kubelet.crt",
            kubelet_key=directory / "kubelet.key",
            apiserver_client_cert=directory / "apiserver-kubelet-client.crt",
            apiserver_client_key=directory / "apiserver-kubelet-client.key",
        )

    def runtime_environment(self) -> dict[str, str]:
        """The ``ORCA_*`` settings that make the runtime serve its kubelet API with these."""
        return {
            "ORCA_KUBELET_TLS_CERT_FILE": str(self.kubelet_cert),
            "ORCA_KUBELET_TLS_KEY_FILE": str(self.kubelet_key),
            "ORCA_KUBELET_CLIENT_CA_FILE": str(self.ca_cert),
        }

    def emulator_arguments(self) -> list[str]:
        """The Kubernetes API emulator's flags for calling kubelets with these."""
        return [
            "--kubelet-client-cert",
            str(self.apiserver_client_cert),
            "--kubelet-client-key",
            str(self.apiserver_client_key),
            "--kubelet-ca",
            str(self.ca_cert),
        ]


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> Any:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def create_kubelet_pki(
    directory: Path,
    *,
    node_name: str = "orca-local",
    addresses: tuple[str, ...] = ("127.0.0.1",),
) -> KubeletPki:
    """Write a fresh CA, kubelet serving certificate and API server client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = KubeletPki.in_directory(directory)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("orca-local-ca")
    ca = (
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_cert(ca, pki.ca_cert)
    _write_key(ca_key, pki.ca_key)

    # The API server checks the kubelet's certificate against the address it dials.
    kubelet_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(node_name), x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    kubelet = _leaf(
        _name(node_name), ca, ca_key, kubelet_key, ExtendedKeyUsageOID.SERVER_AUTH, names
    )
    _write_cert(kubelet, pki.kubelet_cert)
    _write_key(kubelet_key, pki.kubelet_key)

    issue_client_certificate(
        pki,
        APISERVER_CLIENT_CN,
        APISERVER_CLIENT_GROUP,
        cert_path=pki.apiserver_client_cert,
        key_path=pki.apiserver_client_key,
    )
    return pki


def issue_client_certificate(
    pki: KubeletPki,
    common_name: str,
    organization: str | None = None,
    *,
    cert_path: Path,
    key_path: Path,
) -> tuple[Path, Path]:
    """Sign a client certificate for user ``common_name`` (group ``organization``) with the CA."""
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{pki.ca_key} is not the EC key this module writes")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name, organization)
    cert = _leaf(subject, ca, ca_key, key, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    _write_cert(cert, cert_path)
    _write_key(key, key_path)
    return cert_path, key_path


def _leaf(
    subject: x509.Name,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
    usage: ObjectIdentifier,
    names: list[x509.GeneralName],
) -> x509.Certificate:
    builder = (
        _builder(subject, ca.subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert: x509.Certificate = builder.sign(ca_key, hashes.SHA256())
    return cert
