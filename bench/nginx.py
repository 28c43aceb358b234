"""nginx (Debian's package) in front of chatweb's Daphne processes, for the benchmarks and the scale-out tests: a
configuration generated from the production one (docs/deploy/nginx-chatweb.conf), run in the foreground as a
child process with its own prefix, logs and temporary directories."""

from __future__ import annotations

import grp
import os
import pwd
import re
import resource
import shutil
import subprocess
from pathlib import Path

from bench.process import Service

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs" / "deploy" / "nginx-chatweb.conf"
# Directives of the production site that belong to its public address and TLS, not to the proxying itself.
PUBLIC_ONLY = re.compile(r"^\s*(listen|server_name|ssl_\w+|http2)\b")


def nginx_binary() -> str | None:
    """Debian's nginx (in /usr/sbin, which a non-root PATH may lack), or None when it is not installed."""
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def _blocks(text: str) -> list[list[str]]:
    """The top-level directives of an nginx file, comments and blank lines left out: one list of lines each."""
    blocks: list[list[str]] = []
    current: list[str] = []
    depth = 0
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        current.append(line)
        depth += line.count("{") - line.count("}")
        if depth == 0 and (line.rstrip().endswith(("}", ";"))):
            blocks.append(current)
            current = []
    if current or depth:
        raise ValueError("unbalanced braces in the nginx template")
    return blocks


def site_config(template: str, *, listen_port: int, backends: list[int]) -> str:
    """The production site on loopback: its upstream's servers are the `backends` ports, its HTTPS server listens
    on 127.0.0.1:`listen_port` in plain HTTP, the HTTP-to-HTTPS server and the `/static/` location (files from
    `collectstatic`) are left out. Everything else (upgrade headers, buffering, keepalive, timeouts) is kept."""
    out: list[str] = []
    for block in _blocks(template):
        head = block[0].strip()
        if head.startswith("upstream"):
            for line in block:  # the backends in place of the template's, with the template's parameters
                if not line.strip().startswith("server "):
                    out.append(line)
                elif backends:
                    out += [re.sub(r"server \S+", f"server 127.0.0.1:{port}", line) for port in backends]
                    backends = []
        elif head.startswith("server"):
            if any("return 301" in line for line in block):
                continue  # the redirect to HTTPS
            kept = [block[0], f"    listen 127.0.0.1:{listen_port} backlog=4096;"]
            skipping = 0
            for line in block[1:]:
                if skipping or line.strip().startswith("location /static/"):
                    skipping += line.count("{") - line.count("}")
                    continue
                if not PUBLIC_ONLY.match(line):
                    kept.append(line)
            out += kept
        else:
            out += block
    return "\n".join(out) + "\n"


def main_config(prefix: Path, site: str, *, workers: int | str = "auto") -> str:
    """A whole nginx.conf around `site`: in the foreground, everything it writes under `prefix`."""
    user = ""
    if os.geteuid() == 0:  # workers then drop to nobody (the master alone reads the files under `prefix`)
        nobody = pwd.getpwnam("nobody")
        user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""daemon off;
{user}
worker_processes {workers};
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[1]};
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} warn;
events {{
    worker_connections 16384;
}}
http {{
    access_log off;
{temp}
{site}}}
"""


class Nginx(Service):
    """nginx on 127.0.0.1:`port` in front of the Daphne processes on `backends`, from the production template."""

    def __init__(self, prefix: Path, port: int, backends: list[int], *, workers: int | str = "auto",
                 template: Path = TEMPLATE) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        prefix.mkdir(parents=True, exist_ok=True)
        self.config = prefix / "nginx.conf"
        site = site_config(template.read_text(), listen_port=port, backends=backends)
        self.config.write_text(main_config(prefix, site, workers=workers))
        argv = [binary, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(self.config)]
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused the generated configuration:\n{check.stderr}")
        super().__init__(argv, dict(os.environ), prefix / "nginx.out", port, timeout=15)
