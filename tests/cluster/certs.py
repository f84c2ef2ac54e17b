"""Certificates and keys for the test control plane, made with the openssl command line tool.

One CA signs the API server's serving certificate and every client certificate; the API server trusts
it for client authentication (`--client-ca-file`). The service-account key pair signs and verifies
bound tokens minted through the TokenRequest API.
"""

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

APISERVER_SANS = (
    "IP:127.0.0.1",
    "IP:10.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving: ClientCert
    admin: ClientCert
    controller_manager: ClientCert
    sa_key: Path
    sa_pub: Path


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{result.stderr}")


def _key(path: Path) -> Path:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    return path


def _signed(directory: Path, name: str, ca: tuple[Path, Path], subject: str, extensions: str) -> ClientCert:
    key = _key(directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    cert = directory / f"{name}.crt"
    _openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca[0],
        "-CAkey",
        ca[1],
        "-CAcreateserial",
        "-days",
        "3",
        "-sha256",
        "-extfile",
        ext,
        "-out",
        cert,
    )
    return ClientCert(cert, key)


def make_pki(directory: Path) -> Pki:
    """Write a CA, the API server's serving cert, admin and controller-manager client certs, SA keys."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key(directory / "ca.key")
    ca_cert = directory / "ca.crt"
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        ca_key,
        "-subj",
        "/CN=ktune-test-ca",
        "-days",
        "3",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        ca_cert,
    )
    ca = (ca_cert, ca_key)
    client = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
    serving = _signed(
        directory,
        "apiserver",
        ca,
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(APISERVER_SANS)}\n",
    )
    admin = _signed(directory, "admin", ca, "/O=system:masters/CN=ktune-test-admin", client)
    controller_manager = _signed(directory, "controller-manager", ca, "/CN=system:kube-controller-manager", client)
    sa_key = directory / "sa.key"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", sa_key)
    sa_pub = directory / "sa.pub"
    _openssl("pkey", "-in", sa_key, "-pubout", "-out", sa_pub)
    return Pki(ca_cert, ca_key, serving, admin, controller_manager, sa_key, sa_pub)


@dataclass(frozen=True)
class WebhookPki:
    """A webhook server's CA and serving certificate, laid out as cert-controller's Secret keys."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    def secret_data(self) -> dict[str, str]:
        """The Secret's data (base64), keyed as cert-controller's rotator reads it (ca.crt, ca.key, tls.*)."""
        paths = {"ca.crt": self.ca_cert, "ca.key": self.ca_key, "tls.crt": self.cert, "tls.key": self.key}
        return {name: base64.b64encode(path.read_bytes()).decode() for name, path in paths.items()}


def make_webhook_pki(directory: Path, ca_name: str, dns_name: str) -> WebhookPki:
    """A CA and a serving certificate for a controller's webhook server, in a form its rotator keeps.

    The controllers (cert-controller's rotator) regenerate a Secret unless: the CA verifies for the DNS
    name ``ca_name``, the serving cert for ``dns_name`` (their Service's name), both stay valid 90 days
    from now, and the keys are PKCS#1 RSA. The serving cert also names IP 127.0.0.1, because the test API
    server calls the webhook by URL at the process's local port (there is no kube-proxy for a Service).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = directory / "ca.key"
    _openssl("genrsa", "-traditional", "-out", ca_key, "2048")
    ca_cert = directory / "ca.crt"
    _openssl(
        "req", "-x509", "-new", "-key", ca_key, "-subj", f"/CN={ca_name}", "-days", "365", "-sha256",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-addext", f"subjectAltName=DNS:{ca_name}",
        "-out", ca_cert,
    )  # fmt: skip
    key = directory / "tls.key"
    _openssl("genrsa", "-traditional", "-out", key, "2048")
    csr, ext, cert = directory / "tls.csr", directory / "tls.ext", directory / "tls.crt"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{dns_name},IP:127.0.0.1\n"
    )
    _openssl("req", "-new", "-key", key, "-subj", f"/CN={dns_name}", "-out", csr)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "365",
        "-sha256", "-extfile", ext, "-out", cert,
    )  # fmt: skip
    return WebhookPki(ca_cert, ca_key, cert, key)
