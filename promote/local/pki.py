"""Certificates and kubeconfig for the local control plane (``local.controlplane``).

Writes a CA, the apiserver's serving certificate (127.0.0.1, localhost, kubernetes.default),
a client certificate for ``admin`` in ``system:masters``, the service-account signing key, and
a self-contained kubeconfig. Throwaway material for a cluster on 127.0.0.1: every file is 0600
in the cluster's own data directory, and nothing here is a user's secret.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def write_pki(pki: Path) -> Path:
    """CA, apiserver serving cert, admin client cert (system:masters), service-account key."""
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name((NameOID.COMMON_NAME, "promote-local-ca"))
    now = datetime.datetime.now(datetime.UTC)

    def issue(subject: x509.Name, key: Any, extensions: list[tuple[Any, bool]]) -> bytes:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))  # tolerate clock skew
            .not_valid_after(now + datetime.timedelta(days=365))  # `cluster up` may live long
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    ca_usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    ca_ext = [(x509.BasicConstraints(ca=True, path_length=None), True), (ca_usage, True)]
    _write_pem(pki / "ca.crt", issue(ca_name, ca_key, ca_ext))
    leaf_usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    purposes = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    leaf_ext = [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (leaf_usage, True),
        (x509.ExtendedKeyUsage(purposes), False),
    ]
    hosts = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"]
    sans: list[x509.GeneralName] = [x509.DNSName(host) for host in hosts]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.0.0.1")]
    leaves = {
        "apiserver": (
            _name((NameOID.COMMON_NAME, "kube-apiserver")),
            [*leaf_ext, (x509.SubjectAlternativeName(sans), False)],
        ),
        "admin": (
            _name((NameOID.COMMON_NAME, "admin"), (NameOID.ORGANIZATION_NAME, "system:masters")),
            leaf_ext,
        ),
    }
    for stem, (subject, extensions) in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_pem(pki / f"{stem}.crt", issue(subject, key, extensions))
        _write_pem(pki / f"{stem}.key", _private_pem(key))
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write_pem(pki / "sa.key", _private_pem(sa_key))
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    _write_pem(pki / "sa.pub", sa_key.public_key().public_bytes(serialization.Encoding.PEM, public))
    return pki


def _name(*attributes: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_pem(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def write_kubeconfig(path: Path, server: str, pki: Path, *, context: str) -> None:
    """Self-contained (certificates inline); JSON is YAML, so kubectl and clients read it."""

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    cluster = {"server": server, "certificate-authority-data": b64("ca.crt")}
    user = {"client-certificate-data": b64("admin.crt"), "client-key-data": b64("admin.key")}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": "admin", "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": "admin"}}],
        "current-context": context,
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
