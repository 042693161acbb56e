"""Advisory locks in the workspace that name their holder and vanish with it.

``fcntl.flock`` is released by the kernel when the holding process dies, even by SIGKILL, so a crash
never leaves a stale lock; the lock file records who holds it so a refused second run can say so.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from migrate.core.errors import LockHeld


class Lock:
    def __init__(self, directory: Path, name: str, purpose: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        self.path = directory / f"{safe}-{digest}.lock"
        self.name = name
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> Lock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise LockHeld(f"{self.name} is locked by {holder}", hint="wait for that run to finish, "
                           "or stop it; a crashed run releases its lock by itself")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _read_holder(fd: int) -> str:
        try:
            doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return (f"{doc.get('purpose', 'another govmigrate run')} (pid {doc.get('pid')} on "
                    f"{doc.get('host')}, since {doc.get('since')})")
        except (OSError, ValueError):
            return "another govmigrate run"

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
