"""Import a Once-for-All / ProxylessNAS latency table (YAML) into our table format.

Their keys (values `{count, mean, std}` in ms)::

    Conv-input:224x224x3-output:112x112x32                       first conv (3x3, stride 2)
    expanded_conv-input:56x56x32-output:56x56x32-expand:192-kernel:5-stride:1-idskip:1[-se:0-hs:0]
    Conv_1-input:7x7x320-output:7x7x1280                         last 1x1 conv
    Logits-input:7x7x1280-output:1000                            pool + classifier (ProxylessNAS)
    AvgPool2D-..., Conv_2-...                                    MobileNetV3 head pieces

Mapping: `expanded_conv` is our ``ir`` block with expansion = expanded channels / input channels
(MobileNetV3-style keys, with `se:`/`hs:`, give expanded channels; ProxylessNAS keys give the
ratio itself). In a MobileNetV3 table `se:1` is MobileNetV3's SE (ratio 0.25 of the expanded
width, hard-sigmoid: our ``hse0.25``), `hs:1` is ``hswish`` and `hs:0` ``relu``, the stem
(`Conv`) is h-swish, and the head is the sum of `Conv_1` (1x1 conv + h-swish), `AvgPool2D`,
`Conv_2` (the feature mix) and `Logits`: our ``head-...-mix<M>-...-hswish``. In a ProxylessNAS
table ReLU/ReLU6 become ``relu`` and the head is `Conv_1` + `Logits` (1x1 conv, pool,
classifier). So OFA's Note10 tables map completely: every member of `configs/space_mbv3.yaml`
has a prediction at each of their resolutions.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from search_space.cost import conv_out

from .errors import LatencyTableError
from .keys import BlockSpec, HeadSpec, StemSpec
from .table import LatencyTable


@dataclass
class ImportReport:
    """Counts of source entries mapped (a head maps from 2 or 4 of them) and skipped, with skip reasons."""

    mapped: int = 0
    skipped: Counter = field(default_factory=Counter)

    @property
    def total(self) -> int:
        """Entries in the source table."""
        return self.mapped + sum(self.skipped.values())

    def lines(self) -> list[str]:
        """Human-readable summary."""
        out = [f"mapped {self.mapped} of {self.total} entries, skipped {sum(self.skipped.values())}"]
        out += [f"  skipped {n}: {why}" for why, n in self.skipped.most_common()]
        return out


def _parse_ofa_key(key: str) -> tuple[str, dict[str, str]]:
    head, *parts = key.split("-")
    fields = {}
    for p in parts:
        name, sep, val = p.partition(":")
        if not sep:
            raise ValueError(f"bad field {p!r}")
        fields[name] = val
    return head, fields


def _dims(s: str) -> tuple[int, ...]:
    dims = tuple(int(x) for x in s.split("x"))
    if not all(d > 0 for d in dims):
        raise ValueError(f"non-positive size in {s!r}")
    return dims


def _entry(v: Mapping[str, Any]) -> dict[str, Any]:
    return {"median_ms": float(v["mean"]), "count": int(v.get("count", 0)), "std_ms": float(v.get("std", 0.0)),
            "statistic": "mean"}


def load_ofa_yaml(path: str | Path) -> dict[str, Any]:
    """The raw mapping of an OFA/ProxylessNAS table file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise LatencyTableError(f"OFA table {str(p)!r} does not exist")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(p.read_text(), Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        raise LatencyTableError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(doc, Mapping):
        raise LatencyTableError(f"{p}: an OFA table is a mapping of key -> {{count, mean, std}}")
    return dict(doc)


def import_ofa(doc: Mapping[str, Any], source: str = "<ofa>") -> tuple[LatencyTable, ImportReport]:
    """Convert an OFA/ProxylessNAS table mapping into a LatencyTable (see module doc)."""
    rep = ImportReport()
    mbv3 = any("-hs:" in k or "-se:" in k for k in doc)
    table = LatencyTable()
    conv1: list[tuple[tuple[int, ...], tuple[int, ...], Mapping[str, Any]]] = []
    logits: dict[tuple[int, ...], list[tuple[int, Mapping[str, Any]]]] = {}
    # MobileNetV3 head pieces by input shape: pool and feature mix (output, value).
    pools: dict[tuple[int, ...], list[Mapping[str, Any]]] = {}
    mixes: dict[tuple[int, ...], list[tuple[tuple[int, ...], Mapping[str, Any]]]] = {}
    resolution = None
    for key, val in doc.items():
        try:
            kind, f = _parse_ofa_key(str(key))
            if not isinstance(val, Mapping) or "mean" not in val:
                raise ValueError("value lacks 'mean'")
            cin, cout = _dims(f["input"]), _dims(f["output"])
            _entry(val)  # numbers that are not numbers: skipped here, not a traceback below
        except (ValueError, KeyError, TypeError) as e:
            rep.skipped[f"unreadable key or value ({type(e).__name__})"] += 1
            continue
        if kind == "expanded_conv":
            why = _map_block(table, cin, cout, f, val, mbv3, source)
            if why:
                rep.skipped[why] += 1
            else:
                rep.mapped += 1
        elif kind == "Conv":
            h, w, c = cin
            stride = max(1, round(h / cout[0]))
            table.set(StemSpec(h, w, c, cout[2], 3, stride, "hswish" if mbv3 else "relu").key, _entry(val), source)
            resolution = h
            rep.mapped += 1
        elif kind == "Conv_1":
            conv1.append((cin, cout, val))
        elif kind == "Logits":
            logits.setdefault(cin, []).append((cout[-1], val))
        elif kind == "AvgPool2D" and mbv3:
            pools.setdefault(cin, []).append(val)
        elif kind == "Conv_2" and mbv3:
            mixes.setdefault(cin, []).append((cout, val))
        else:
            rep.skipped[f"{kind}: no counterpart in our head (1x1 conv, pool, [feature mix], classifier)"] += 1
    used_pools: set[tuple[int, ...]] = set()
    used_mixes: set[tuple[int, ...]] = set()
    used_logits: set[tuple[int, ...]] = set()
    for cin, cout, val in conv1:
        # Each Conv_1 chains to the pieces whose input is its output (shared pieces count once).
        if not mbv3:
            chains = [([val, lv], n, 0, [cout]) for n, lv in logits.get(cout, [])]
        else:
            pooled = (1, 1, cout[2])
            chains = [([val, pv, mv, lv], n, mout[2], [mout])
                      for pv in pools.get(cout, []) for mout, mv in mixes.get(pooled, [])
                      for n, lv in logits.get(mout, [])]
        if not chains:
            rep.skipped["Conv_1 without the rest of its head (" + ("AvgPool2D, Conv_2, " if mbv3 else "")
                        + "Logits)"] += 1
            continue
        rep.mapped += 1
        if mbv3:
            used_pools.add(cout)
            used_mixes.add((1, 1, cout[2]))
        for parts, n, mix, logit_in in chains:
            used_logits.update(logit_in)
            es = [_entry(v) for v in parts]
            table.set(HeadSpec(cin[0], cin[1], cin[2], cout[2], n, "hswish" if mbv3 else "relu", mix).key, {
                "median_ms": sum(e["median_ms"] for e in es), "count": min(e["count"] for e in es),
                "std_ms": math.sqrt(sum(e["std_ms"] ** 2 for e in es)), "statistic": "mean"}, source)
    for what, pieces, used in (("AvgPool2D", pools, used_pools), ("Conv_2", mixes, used_mixes),
                               ("Logits", logits, used_logits)):
        for k, vals in pieces.items():
            if k in used:
                rep.mapped += len(vals)
            else:
                rep.skipped[f"{what} without a matching Conv_1 head"] += len(vals)
    heads = [k for k in table.entries if k.startswith("head-")]
    table.meta = {
        "device": {"source": "import-ofa", "file": source,
                   "date": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "measurement": {"statistic": "mean", "tool": "OFA/ProxylessNAS table"},
        "resolution": resolution,
        "num_classes": int(heads[0].split("-cls")[1].split("-")[0]) if heads else 1000,
        "in_channels": 3,
        "imported": {"mapped": rep.mapped, "skipped": sum(rep.skipped.values()),
                     "style": "mobilenetv3" if mbv3 else "proxylessnas"},
    }
    return table, rep


def _map_block(table: LatencyTable, cin: tuple[int, ...], cout: tuple[int, ...], f: Mapping[str, str],
               val: Mapping[str, Any], mbv3: bool, source: str) -> str | None:
    """Add one expanded_conv entry; returns why it was skipped, or None."""
    h, w, c_in = cin
    ho, wo, c_out = cout
    k, s, skip = int(f["kernel"]), int(f["stride"]), int(f.get("idskip", 0))
    e_raw = int(f["expand"])
    # MobileNetV3-style keys give the expanded width; ProxylessNAS keys give the ratio.
    mid = e_raw if (mbv3 or e_raw > 12) else e_raw * c_in
    if mid % c_in:
        return "expanded width not a multiple of the input channels"
    if (ho, wo) != (conv_out(h, k, s), conv_out(w, k, s)):
        return "output size inconsistent with kernel/stride"
    if skip and not (s == 1 and c_in == c_out):
        return "idskip:1 on a shape-changing block"
    se = 0.25 if int(f.get("se", 0)) else 0.0
    act = "hswish" if int(f.get("hs", 0)) else "relu"
    spec = BlockSpec(h, w, c_in, c_out, k, s, "ir", mid // c_in, se, bool(skip), act, "hsigmoid" if mbv3 else "sigmoid")
    table.set(spec.key, _entry(val), source)
    return None
