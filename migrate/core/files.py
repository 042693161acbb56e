"""Files that may hold what others must not read (exports, baselines, scripts): written 0600 from creation."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``path`` 0600 from creation and replace it atomically: a reader sees the old file or the new, and no
    moment exists in which the file is readable by others (the mode is set when the file is made, never after)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
