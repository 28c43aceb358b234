"""The deployment's nginx configuration (docs/deploy/nginx-chatweb.conf) as nginx itself reads it: the production
file as written, and the loopback site the benchmarks and the scale-out test generate from it (bench/nginx.py)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.nginx import TEMPLATE, main_config, nginx_binary, site_config


@pytest.fixture
def nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CHATWEB_REQUIRE_SERVICES") == "1":
            pytest.fail("this test needs nginx (make nginx-deps)")
        pytest.skip("needs nginx (Debian's package: make nginx-deps); CI installs it")
    return binary


def nginx_test(binary: str, prefix: Path, config: str) -> subprocess.CompletedProcess:
    path = prefix / "nginx.conf"
    path.write_text(config)
    return subprocess.run([binary, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(path)],
                          capture_output=True, text=True, check=False)


def self_signed(prefix: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chat.example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = prefix / "fullchain.pem", prefix / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_the_production_configuration_passes_nginx_t(nginx, tmp_path):
    cert, key = self_signed(tmp_path)
    site = (TEMPLATE.read_text()
            .replace("/etc/letsencrypt/live/chat.example.com/fullchain.pem", str(cert))
            .replace("/etc/letsencrypt/live/chat.example.com/privkey.pem", str(key)))
    assert str(cert) in site and str(key) in site
    result = nginx_test(nginx, tmp_path, main_config(tmp_path, site))
    assert result.returncode == 0, result.stderr


def test_the_generated_loopback_site_keeps_the_proxying_and_drops_tls(nginx, tmp_path):
    site = site_config(TEMPLATE.read_text(), listen_port=18080, backends=[18001, 18002, 18003])
    result = nginx_test(nginx, tmp_path, main_config(tmp_path, site))
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in site.splitlines()]
    assert [line for line in lines if line.startswith("server 127.0.0.1:")] == [
        "server 127.0.0.1:18001 max_fails=0;", "server 127.0.0.1:18002 max_fails=0;",
        "server 127.0.0.1:18003 max_fails=0;"]
    assert [line for line in lines if line.startswith("listen")] == ["listen 127.0.0.1:18080 backlog=4096;"]
    assert not any(line.startswith(("ssl_", "return 301", "location /static/", "http2")) for line in lines)
    for kept in ("least_conn;", "keepalive 64;", "proxy_set_header Upgrade $http_upgrade;",
                 "proxy_set_header Connection $connection_upgrade;", "proxy_buffering off;",
                 "proxy_read_timeout 1h;", "proxy_read_timeout 300s;"):
        assert kept in lines, kept
