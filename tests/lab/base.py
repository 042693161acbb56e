"""Shared plumbing of the test lab: free ports, private temporary directories, process start-up checks.

A server that fails to start raises :class:`LabError` carrying the server's own log excerpt, so a test
fails saying why; nothing in the lab is ever skipped silently.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
_running: list[ServerProcess] = []


class LabError(RuntimeError):
    """A lab server could not be started or used; the message includes its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def lab_tempdir(prefix: str) -> Path:
    """A directory other system users (the servers' own accounts) can traverse."""
    path = Path(tempfile.mkdtemp(prefix=f"govlab-{prefix}-"))
    path.chmod(0o755)
    return path


def which(program: str, package: str) -> str:
    for candidate in (shutil.which(program), f"/usr/sbin/{program}", f"/usr/bin/{program}"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise LabError(f"{program} not found; install the Debian package {package} (make setup does)")


def wait_for_port(port: int, *, timeout: float = 15.0, proc: subprocess.Popen | None = None,
                  log: Path | None = None, what: str = "server", greeting: bytes | None = None) -> None:
    """Wait until ``port`` accepts connections (and, with ``greeting``, the server's first line starts
    with it, so that some other program holding the port is not mistaken for ours)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            said = log_excerpt(log.with_suffix(".stdout")) if log is not None else ""
            raise LabError(f"{what} exited with status {proc.returncode} during start-up\n{log_excerpt(log)}"
                           + (f"\nits own output:\n{said}" if log is not None and log.with_suffix(".stdout").exists()
                              else ""))
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5) as sock:
                if greeting is None:
                    return
                sock.settimeout(1.0)
                if sock.recv(len(greeting)) == greeting:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise LabError(f"{what} did not listen on {LOOPBACK}:{port} within {timeout:.0f}s\n{log_excerpt(log)}")


def log_excerpt(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return "(no log file was written)"
    text = log.read_text(errors="replace").splitlines()
    return "--- server log (last lines) ---\n" + "\n".join(text[-lines:])


class ServerProcess:
    """A server started in the foreground as our child; stopped at exit if a test forgot to."""

    def __init__(self, argv: list[str], *, log: Path, what: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.what = what
        self.log = log
        self._out = open(log.with_suffix(".stdout"), "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True)
        _running.append(self)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise LabError(f"{self.what} exited with status {self.proc.returncode}\n{log_excerpt(self.log)}\n"
                           f"{log_excerpt(self.log.with_suffix('.stdout'))}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        if self in _running:
            _running.remove(self)


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        try:
            server.stop()
        except Exception:
            pass
