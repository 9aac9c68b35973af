"""What kind of block a table key is (the groups a calibration fits a factor each to), and the calibration defaults.

Entries are whole blocks (an MBConv block is timed as one probe), so a kind is what a key says
about a whole block. Granularities: `one` (the whole network), `block` (stem, head, op), or
`kernel` followed by facets joined by `-` (e.g. `kernel-se`: op and kernel, with or without SE),
each optionally with `+weights` (a term per million weights besides the factors).
"""
from __future__ import annotations

import re
from collections.abc import Callable

from .errors import LatencyTableError

BASE_KINDS = ("one", "block", "kernel", "kernel-se", "kernel-se-stride", "kernel-se-act", "kernel-se-exp",
              "kernel-size", "kernel-se-size", "kernel-stride-size")
# `+weights` adds one more term, ms per million weights of every block, fitted beside the factors:
# a probe runs its block over and over with the weights in cache, a network streams them from
# memory once per run when they do not all fit (see latency.calibrate).
WEIGHTS = "weights"
WEIGHTS_SUFFIX = "+" + WEIGHTS
KINDS = BASE_KINDS + tuple(k + WEIGHTS_SUFFIX for k in BASE_KINDS)
# Measured best for both uses (docs/benchmarks.md): host tables (mnas@96 100% within +-10% with 60
# networks) and device calibration (Note10, K = 20: 94% against 93% without the term); the fit
# keeps the per-kind factors and the term only where leave-one-out says they help.
DEFAULT_KINDS = "kernel-se+weights"
# Whole networks a host build times to fit its calibration: the weights term and per-kind factors
# need about this many (docs/benchmarks.md, mnas@96: 30 gave 92-93%, 60 gave 100% within +-10%).
CALIBRATION_NETWORKS = 60
# Whole networks the phone kit times for `calibrate`: on OFA's Note10 data, 20 put 94% of the other
# networks within +-10% and 10 put 78% (docs/benchmarks.md); a phone times 20 networks in about a minute.
DEVICE_CALIBRATION_NETWORKS = 20


def split_kinds(kinds: str) -> tuple[str, bool]:
    """(the granularity, whether the weights term is asked for) of a kinds string like `kernel-se+weights`."""
    if kinds.endswith(WEIGHTS_SUFFIX):
        return kinds[:-len(WEIGHTS_SUFFIX)], True
    return kinds, False
_KERNEL = re.compile(r"-k(\d+)-")
# What a block key says about the block, each a factor of its kind (act: its last field).
# SE is `se{r}` (sigmoid gate) or `hse{r}` (hard-sigmoid, MobileNetV3).
FACETS = {"kernel": _KERNEL, "se": re.compile(r"-h?se([0-9.e+-]+?)-"), "stride": re.compile(r"-s(\d+)-"),
          "exp": re.compile(r"-e([0-9.]+)-"), "act": _KERNEL, "size": re.compile(r"-in(\d+)x")}


def kind_function(kinds: str = DEFAULT_KINDS) -> Callable[[str], str]:
    """The key -> kind map of a granularity: `one`, `block`, or facets of a block joined by `-` (see KINDS)."""
    kinds = split_kinds(kinds)[0]
    facets = kinds.split("-")
    if kinds not in ("one", "block") and (not facets or facets[0] != "kernel"
                                          or any(f not in FACETS for f in facets)):
        raise LatencyTableError(f"kinds {kinds!r}: expected one, block, or kernel followed by any of "
                                f"{list(FACETS)[1:]} joined by '-' (e.g. kernel-se)")

    def kind_of(key: str) -> str:
        if kinds == "one":
            return "net"
        prefix = key.split("-", 1)[0]
        if prefix in ("stem", "head") or _KERNEL.search(key) is None:  # whole pieces, not blocks
            return prefix
        if kinds == "block":
            return prefix
        out = prefix
        for f in facets:
            m = FACETS[f].search(key)
            if f == "se":
                out += "-se" if m is not None and float(m.group(1)) > 0 else ""
            elif f == "act":
                out += "-" + key.rsplit("-", 1)[1]
            elif m is not None:
                out += f"-{f[0]}{m.group(1)}"
        return out

    return kind_of


def parent_kind(kind: str) -> str:
    """The op-and-kernel kind a finer kind shrinks toward (itself when it is one, or a stem or head)."""
    f = kind.split("-")
    return "-".join(f[:2]) if len(f) > 2 and _KERNEL.fullmatch(f"-{f[1]}-") else kind
