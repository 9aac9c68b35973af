"""Files a user can trust: atomic replacement and UTF-8 reads that fail in one line.

The lowest layer holds these so that every package (tables, runs, checkpoints, weights) writes
and reads files the same way: a crash leaves the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace `path` with `data` atomically (temp file in the same folder + fsync + os.replace)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; these are ordinary files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(p.parent)
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace `path` with UTF-8 `text` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_text(path: str | Path, error: type[Exception], what: str = "file") -> str:
    """The UTF-8 text of `path`; a missing, unreadable or non-UTF-8 file raises `error` naming it."""
    p = Path(path)
    if not p.exists():
        raise error(f"{what} {str(p)!r} does not exist")
    if not p.is_file():
        raise error(f"{what} {str(p)!r} is not a file")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise error(f"{what} {str(p)!r} cannot be read: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{p}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})") from None


def read_json(path: str | Path, error: type[Exception], what: str = "file") -> Any:
    """The parsed JSON of `path`; a missing, unreadable, non-UTF-8 or invalid file raises `error` naming it."""
    text = read_text(path, error, what)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise error(f"{path}: corrupt {what} ({e})") from None


__all__ = ["atomic_write_bytes", "atomic_write_text", "read_json", "read_text"]
