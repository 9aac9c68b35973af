"""The run's durable record: an append-only JSON-lines journal and atomically replaced JSON state.

Every line of ``journal.jsonl`` is one finished evaluation, written with flush + fsync, so a
``kill -9`` loses at most the line being written; `Journal.read` drops such a torn last line
and truncates it away so later appends stay one record per line. State files (the controller's)
are written to a temporary file in the same folder, fsynced and moved over the old one with
`os.replace`, so a reader sees the old or the new file, never half of one.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _json_safe(x: Any) -> Any:
    # JSON has no NaN/inf: a diverged loss is recorded as null.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path` with `text` atomically (temp file + fsync + os.replace)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)


def save_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(_json_safe(obj), sort_keys=True) + "\n")


def load_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


class Journal:
    """Append-only JSON lines, one finished evaluation per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def read(self, repair: bool = False) -> list[dict[str, Any]]:
        """All complete records; a torn last line is dropped (and cut from the file when `repair`)."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        records: list[dict[str, Any]] = []
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # the write of this line was interrupted
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
            good += len(line)
        if repair and good < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably (flush + fsync before returning)."""
        line = json.dumps(_json_safe(record), sort_keys=False) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read())

    def __len__(self) -> int:
        return len(self.read())


__all__ = ["Journal", "atomic_write_text", "save_json", "load_json"]
