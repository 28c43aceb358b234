"""Child processes for the benchmarks and the live-server tests: a free port, a service whose output goes to a log
file, started and waited for until it listens, and chatweb under Daphne."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daphne_argv(port: int, module: str = "daphne", application: str = "chatweb.asgi:application") -> list[str]:
    """chatweb under `python -m daphne` (or a module that wraps Daphne's command line, such as bench.serve)."""
    return [sys.executable, "-m", module, "-b", "127.0.0.1", "-p", str(port), application]


class Service:
    """A child process whose output goes to `log_path`, started and waited for until `port` listens."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log_path: Path, port: int, *, timeout: float = 60,
        cwd: Path = ROOT,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.process.args[:3]} exited early:\n{self.output()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"port {self.port} not listening after {timeout:g} s:\n{self.output()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        """The end of what the process printed."""
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """Kill -9: the process dies mid-work, as a crashed worker would."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
