"""What every resumable command does with its run folder: refuse a file as `--out`, compare configs.

The search, stage-2 training and supernet training each keep a folder that `--resume` continues;
they share these checks so that a user gets the same one-line answers from all three.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UserError


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differences(old: dict[str, Any], new: dict[str, Any],
                allowed: Callable[[str], bool] = lambda key: False) -> list[str]:
    """Dotted keys whose values differ between two nested mappings, except those `allowed` to change."""
    a, b = flatten(old), flatten(new)
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not allowed(k)]


def describe(old: dict[str, Any], new: dict[str, Any], keys: list[str], limit: int = 4) -> str:
    """`key: old -> new` for the first `limit` keys, for a one-line error."""
    a, b = flatten(old), flatten(new)
    shown = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:limit])
    return shown + (" ..." if len(keys) > limit else "")


def check_out_dir(out: Path, error: type[UserError] = UserError) -> None:
    """Refuse a run folder path that is (or lies under) an existing file, before any work."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise error(f"--out {str(out)!r}: {str(p)!r} is a file, not a folder; choose another --out")
            return


def is_leftover(p: Path) -> bool:
    """A temp file of an atomic write cut off by a kill: it was never part of the run."""
    return p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file()


__all__ = ["check_out_dir", "describe", "differences", "flatten", "is_leftover"]
