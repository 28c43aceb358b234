"""Fixtures for the development upstream over real HTTP: one server per test session, a nonce per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from conversations.devupstream.server import ThreadedUpstream
from conversations.upstream import client as upstream_client

__all__ = ["dev_upstream", "fast_backoff", "nonce", "self_signed", "tls_upstream", "upstream_http"]


@pytest.fixture(scope="session")
def dev_upstream() -> Iterator[ThreadedUpstream]:
    """The dev upstream on a free port; per-scenario switches go in the URL: `dev_upstream.v1(fail=429)`."""
    with ThreadedUpstream() as upstream:
        yield upstream


@pytest.fixture
def nonce() -> str:
    """A fresh `key=` for the upstream's per-key state (times=N) and counters (/_stats)."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def upstream_http() -> AsyncIterator[None]:
    """Closes this test's pooled upstream client with its event loop (no leaked sockets)."""
    yield
    await upstream_client.close_client()


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without Retry-After back off in milliseconds instead of seconds."""
    monkeypatch.setattr(upstream_client, "BACKOFF_BASE", 0.01)
    monkeypatch.setattr(upstream_client, "BACKOFF_CAP", 0.05)


def self_signed(directory: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by itself, and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[ThreadedUpstream]:
    """The dev upstream over HTTPS with a self-signed certificate (`tls_upstream.tls[0]`: the certificate file)."""
    with ThreadedUpstream(tls=self_signed(tmp_path), delay=0.001) as upstream:
        yield upstream
