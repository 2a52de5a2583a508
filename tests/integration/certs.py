"""A throwaway CA and certificates for TLS tests, made with the openssl CLI (bounded, loopback names only)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from humanizer.local.redis_server import TLSFiles


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise FileNotFoundError("the TLS tests need the openssl command")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _signed(name: str, cn: str, ext: str, d: Path) -> tuple[Path, Path]:
    key, csr, crt, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
    extfile.write_text(ext)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={cn}", cwd=d)
    _openssl("x509", "-req", "-in", str(csr), "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", str(crt), "-days", "2", "-sha256", "-extfile", str(extfile), cwd=d)
    return crt, key


def make_tls_files(d: Path, auth_clients: str = "no") -> TLSFiles:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=humanizer-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    crt, key = _signed("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                       "extendedKeyUsage=serverAuth\n", d)
    client_crt, client_key = _signed("client", "humanizer-client", "extendedKeyUsage=clientAuth\n", d)
    return TLSFiles(cert_file=crt, key_file=key, ca_file=d / "ca.crt", auth_clients=auth_clients,
                    client_cert_file=client_crt, client_key_file=client_key)
