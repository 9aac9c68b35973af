"""A work queue shared by the processes of a study: one claim file per item, taken over when its owner died."""
from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int, marker: bytes) -> bool:
    """Whether process `pid` runs and its command line contains `marker` (a recycled pid does not count)."""
    try:
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ProcessLookupError):
        return False
    return marker in cmd


def claim(path: Path, marker: bytes) -> bool:
    """Take the item whose claim file is `path`; a claim whose process died (see `alive`) is taken over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid == os.getpid():
                return True
            if pid and alive(pid, marker):
                return False
            path.unlink(missing_ok=True)
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        return True
    return False
