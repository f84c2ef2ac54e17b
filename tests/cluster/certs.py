"""Certificates and keys for the test control plane, made with the openssl command line tool.

One CA signs the API server's serving certificate and every client certificate; the API server trusts
it for client authentication (`--client-ca-file`). The service-account key pair signs and verifies
bound tokens minted through the TokenRequest API.
"""

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
