"""A self-signed certificate authority and a server certificate, made with openssl.

``make_certificates(directory)`` writes ``ca.pem`` (the CA a client trusts),
``server.pem`` and ``server.key`` (signed by that CA, valid for ``127.0.0.1`` and
``localhost``) and ``other-ca.pem`` (a CA that signed nothing: a client trusting
only it must refuse the server).
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ("Certificates", "add_acl_user", "make_certificates", "redis_command")


@dataclasses.dataclass(frozen=True)
class Certificates:
    """Paths of the files ``make_certificates`` wrote."""

    ca: Path
    other_ca: Path
    cert: Path
    key: Path


#: A fresh P-256 key, unencrypted (far quicker to make than an RSA key).
_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        msg = f"openssl {' '.join(args)} failed:\n{proc.stderr}"
        raise RuntimeError(msg)


def _self_signed_ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", *_NEW_KEY, "-days", "2",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
             cwd=cwd)  # fmt: skip


def make_certificates(directory: Path) -> Certificates:
    """Write a CA, a server certificate it signed, and an unrelated CA."""
    if shutil.which("openssl") is None:
        msg = "the TLS tests need openssl: apt-get install -y openssl"
        raise RuntimeError(msg)
    _self_signed_ca("ca", directory)
    _self_signed_ca("other-ca", directory)
    (directory / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("req", *_NEW_KEY, "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
             "-out", "server.pem", cwd=directory)  # fmt: skip
    return Certificates(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
    )


def redis_command(port: int, *words: str) -> bytes:
    """Send one command as the default user to a plain port; return the raw reply."""
    payload = f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        reply = sock.recv(65536)
    if not reply.startswith((b"+", b":", b"$", b"*")):
        msg = f"{' '.join(words[:2])} failed: {reply!r}"
        raise RuntimeError(msg)
    return reply


def add_acl_user(port: int, user: str, password: str, *rules: str) -> None:
    """Create (or reset) an ACL user on the server, through its plain port."""
    redis_command(port, "ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
