"""Crash points for the crash-safety tests: ``GOVMIGRATE_CRASH_AT="after-append:3"`` makes the process kill
itself with SIGKILL the third time it passes ``crashpoint("after-append")``. Read once at import; unset in
production, where a crash point costs one comparison."""

from __future__ import annotations

import os
import signal
import threading
from collections import defaultdict

_CRASH_AT = os.environ.get("GOVMIGRATE_CRASH_AT", "")
_counts: dict[str, int] = defaultdict(int)
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    if not _CRASH_AT:
        return
    point, _, nth = _CRASH_AT.partition(":")
    if point != name:
        return
    with _lock:
        _counts[name] += 1
        if _counts[name] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)
