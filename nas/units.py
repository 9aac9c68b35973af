"""Targets written the way people write them: ``400M``, ``0.4G``, ``4e8``, ``75ms``, ``0.075s``, ``75``.

A target is parsed for one objective kind: ``flops`` targets become multiply-adds (MACs, the
"FLOPs" of the EfficientNet paper), ``latency`` targets become milliseconds. A unit of the other
kind (``75ms`` for flops, ``400M`` for latency) is an error, not a silent conversion.
"""
from __future__ import annotations

import math
import re

# Multipliers of a MACs count. "B" is the papers' billion (EfficientNet Table 2: "0.39B").
MAC_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9, "t": 1e12}
# Multipliers to milliseconds.
TIME_UNITS = {"": 1.0, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3}
# Words that may follow a MACs multiplier: 400M, 400MFLOPs, 0.4 GMACs.
_MAC_WORDS = ("flops", "flop", "macs", "mac", "madds")

_NUMBER = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([^\d\s].*?)?\s*$")


class UnitError(ValueError):
    """A target that cannot be read, or whose unit does not fit the objective."""


def _split(value: str | int | float) -> tuple[float, str]:
    """A value as (number, unit text in lower case)."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a number")
    if isinstance(value, (int, float)):
        return float(value), ""
    if not isinstance(value, str):
        raise UnitError(f"{value!r} is not a number with a unit")
    m = _NUMBER.match(value)
    if not m:
        raise UnitError(f"{value!r} is not a number with a unit (e.g. 400M, 0.4G, 75ms)")
    return float(m.group(1)), (m.group(2) or "").strip().lower()


def _mac_multiplier(unit: str) -> float | None:
    """The MACs multiplier of a unit text, or None if it is not a MACs unit."""
    for word in _MAC_WORDS:
        if unit.endswith(word):
            unit = unit[: -len(word)].strip()
            break
    return MAC_UNITS.get(unit)


def parse_macs(value: str | int | float) -> float:
    """A MACs count from ``400M``, ``0.4G``, ``4e8``, ``400e6``, ``400MFLOPs``."""
    num, unit = _split(value)
    mult = _mac_multiplier(unit)
    if mult is None:
        if unit in TIME_UNITS:
            raise UnitError(f"{value!r} is a time, but a FLOPs (MACs) target is needed, e.g. 400M, 0.4G or 4e8")
        raise UnitError(f"{value!r}: unknown unit {unit!r}; use K, M, G (or B) for MACs, e.g. 400M")
    macs = num * mult
    if not math.isfinite(macs) or macs <= 0:
        raise UnitError(f"{value!r} must be a positive number of MACs")
    if unit == "" and macs < 1000:
        # Nobody searches for a network of 75 multiply-adds: this is a missing unit.
        raise UnitError(f"{value!r} MACs looks like a missing unit; write e.g. {value}M or {value}ms (for latency)")
    return macs


def parse_ms(value: str | int | float) -> float:
    """Milliseconds from ``75ms``, ``0.075s``, ``75000us`` or a bare ``75`` (ms)."""
    num, unit = _split(value)
    if unit not in TIME_UNITS:
        if _mac_multiplier(unit) is not None:
            raise UnitError(f"{value!r} is a MACs count, but a latency target is needed, e.g. 75ms or 0.075s")
        raise UnitError(f"{value!r}: unknown unit {unit!r}; use ms, s or us for latency, e.g. 75ms")
    ms = num * TIME_UNITS[unit]
    if not math.isfinite(ms) or ms <= 0:
        raise UnitError(f"{value!r} must be a positive latency")
    if unit == "" and ms >= 1e5:
        raise UnitError(f"{value!r} ms is over a minute: looks like a MACs count; a latency target is e.g. 75ms")
    return ms


def parse_target(value: str | int | float, kind: str) -> float:
    """A target for objective `kind` ('flops' -> MACs, 'latency' -> ms)."""
    if kind == "flops":
        return parse_macs(value)
    if kind == "latency":
        return parse_ms(value)
    raise UnitError(f"objective kind {kind!r} has no target")


def format_macs(macs: float) -> str:
    """A short human form of a MACs count: ``385.8M``, ``1.83G``."""
    for unit, mult in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(macs) >= mult:
            return f"{macs / mult:.4g}{unit}"
    return f"{macs:.4g}"


def format_target(value: float, kind: str) -> str:
    """A target in its unit: ``400M`` for flops, ``75ms`` for latency."""
    return format_macs(value) if kind == "flops" else f"{value:.4g}ms"


__all__ = ["UnitError", "parse_macs", "parse_ms", "parse_target", "format_macs", "format_target"]
