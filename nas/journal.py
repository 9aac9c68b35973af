"""The run's durable record: an append-only JSON-lines journal and atomically replaced JSON state.

Every line of ``journal.jsonl`` is one finished evaluation, written with flush + fsync, so a
``kill -9`` loses at most the line being written. Nothing journaled is ever deleted or rewritten:
`Journal.read` refuses (one line naming the file and line, the file untouched) any line that is
not a valid record, except a torn last line (no newline, not JSON), which it skips; with
``repair`` it moves those bytes to a side file ``journal.jsonl.torn-<n>`` and cuts them, so later
appends stay one record per line, and adds the newline a complete last record lacks. State
files (the controller's) are written to a temporary file in the same folder, fsynced and moved
over the old one with `os.replace`, so a reader sees the old or the new file, never half of one.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from search_space import parse
from search_space.files import atomic_write_bytes, atomic_write_text, read_text

from .errors import UserError
from .results import STATUSES


class JournalError(UserError):
    """A journal or state file that cannot be read as written: one line naming the file (and line)."""


def _json_safe(x: Any) -> Any:
    # JSON has no NaN/inf: a diverged loss is recorded as null.
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def save_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(_json_safe(obj), sort_keys=True) + "\n")


def load_json(path: str | Path) -> Any:
    """Read a JSON file; a missing, non-UTF-8 or invalid one raises JournalError naming it."""
    p = Path(path)
    text = read_text(p, JournalError, "file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JournalError(f"{p}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def check_search_record(record: dict[str, Any], position: int) -> None:
    """Raise ValueError saying why `record`, line `position` (from 0) of a search journal, is not a valid record."""
    if record.get("index") != position or not _count(record.get("index")):
        raise ValueError(f"'index' is {record.get('index')!r} where {position} was expected")
    g = record.get("genotype")
    if not isinstance(g, str):
        raise ValueError(f"'genotype' is {g!r}, not a genotype string")
    try:
        parse(g)
    except ValueError as e:
        raise ValueError(f"'genotype' does not parse: {' '.join(str(e).split())}") from None
    if record.get("status") not in STATUSES:
        raise ValueError(f"'status' is {record.get('status')!r}, not one of {', '.join(STATUSES)}")
    acc = record.get("accuracy")
    if not (_number(acc) and 0.0 <= acc <= 1.0):
        raise ValueError(f"'accuracy' is {acc!r}, not a number in [0, 1]")
    if not _number(record.get("reward")):
        raise ValueError(f"'reward' is {record.get('reward')!r}, not a finite number")
    for key in ("macs", "params"):
        if not _count(record.get(key)):
            raise ValueError(f"{key!r} is {record.get(key)!r}, not a count")
    for key in ("latency_ms", "train_time_s"):  # optional: null when not measured
        if record.get(key) is not None and not _number(record[key]):
            raise ValueError(f"{key!r} is {record[key]!r}, not a finite number")


class Journal:
    """Append-only JSON lines, one finished evaluation per line; `check` validates each record."""

    def __init__(self, path: str | Path,
                 check: Callable[[dict[str, Any], int], None] | None = None) -> None:
        self.path = Path(path)
        self.check = check
        self.torn = b""  # the torn last line the latest `read` skipped (empty when none)
        self.set_aside: Path | None = None  # the side file the latest repair moved it to

    def _parse(self, raw: bytes, lineno: int) -> dict[str, Any]:
        where = f"{self.path} line {lineno} (file left as it is)"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JournalError(f"{where}: not UTF-8 text (byte {raw[e.start]:#04x})") from None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise JournalError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise JournalError(f"{where}: not a record (a JSON {type(record).__name__}, not an object)")
        if self.check is not None:
            try:
                self.check(record, lineno - 1)
            except (ValueError, TypeError) as e:
                raise JournalError(f"{where}: not a valid record: {e}") from None
        return record

    def read(self, repair: bool = False) -> list[dict[str, Any]]:
        """Every record; a bad line raises JournalError (file untouched), a torn last line is skipped.

        With `repair` the torn last line is moved to a side file and cut, and a complete last
        record without its newline gets one, so the next append starts a line of its own.
        """
        self.torn, self.set_aside = b"", None
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise JournalError(f"{self.path}: cannot be read: {e.strerror}") from None
        lines = data.split(b"\n")
        tail = lines.pop()  # the bytes after the last newline: empty, a torn write or a record
        records = [self._parse(raw, i) for i, raw in enumerate(lines, 1)]
        if tail:
            try:
                json.loads(tail.decode("utf-8"))
            except ValueError:  # not JSON (or not UTF-8): the write of this line was interrupted
                self.torn = tail
            else:
                records.append(self._parse(tail, len(lines) + 1))
        if repair and tail:
            self._repair(len(data), tail)
        return records

    def _repair(self, size: int, tail: bytes) -> None:
        if self.torn:
            n = 1
            while (side := self.path.with_name(f"{self.path.name}.torn-{n}")).exists():
                n += 1
            atomic_write_bytes(side, tail)  # durable before the bytes leave the journal
            self.set_aside = side
        with open(self.path, "r+b") as f:
            if self.torn:
                f.truncate(size - len(tail))
            else:
                f.seek(size)
                f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())

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


__all__ = ["Journal", "JournalError", "atomic_write_text", "check_search_record", "save_json", "load_json"]
