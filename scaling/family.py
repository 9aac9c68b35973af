"""Emit a scaled family (rows of width, depth, resolution, params, MACs) from any genotype."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from search_space.cost import cost
from search_space.genotype import Genotype
from search_space.rounding import DIVISOR

from .compound import OFFICIAL, Multipliers, apply, compound, official


@dataclass
class Member:
    """One scaled model of a family and its cost."""

    name: str
    phi: float
    width: float
    depth: float
    resolution: int
    params: int
    macs: int
    genotype: Genotype
    dropout: float | None = None
    num_classes: int = 1000
    in_channels: int = 3

    def row(self) -> dict:
        """The JSON/table row (without the genotype object)."""
        d = asdict(self)
        d.pop("genotype")
        d["genotype"] = self.genotype.to_string()
        if d["dropout"] is None:
            d.pop("dropout")
        d.pop("num_classes")
        d.pop("in_channels")
        return d


def member(base: Genotype, m: Multipliers, name: str, num_classes: int = 1000, in_channels: int = 3,
           divisor: int = DIVISOR) -> Member:
    """Scale `base` by `m` (channels to multiples of `divisor`) and count its cost."""
    g = apply(base, m, divisor)
    c = cost(g, in_channels=in_channels, num_classes=num_classes)
    return Member(name=name, phi=m.phi, width=m.width, depth=m.depth, resolution=g.resolution,
                  params=c.params, macs=c.macs, genotype=g, dropout=m.dropout, num_classes=num_classes,
                  in_channels=in_channels)


def official_family(base: Genotype, prefix: str = "efficientnet", num_classes: int = 1000,
                    in_channels: int = 3) -> list[Member]:
    """B0..B7 with the released coefficients."""
    return [member(base, official(k, base.resolution), f"{prefix}-{k}", num_classes, in_channels) for k in OFFICIAL]


def compound_family(base: Genotype, alpha: float, beta: float, gamma: float, phis: Iterable[float],
                    prefix: str = "model", num_classes: int = 1000, in_channels: int = 3,
                    divisor: int = DIVISOR) -> list[Member]:
    """One member per phi with depth alpha^phi, width beta^phi, resolution gamma^phi."""
    return [member(base, compound(alpha, beta, gamma, phi, base.resolution), f"{prefix}-phi{_fmt(phi)}",
                   num_classes, in_channels, divisor) for phi in phis]


def write_members(members: list[Member], out: str | Path) -> list[Path]:
    """Write one genotype YAML per member into `out`; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in members:
        p = out / f"{m.name}.yaml"
        header = (f"# {m.name}: phi={_fmt(m.phi)} width={m.width:g} depth={m.depth:g} resolution={m.resolution}"
                  f" params={m.params:,} macs={m.macs:,}\n")
        p.write_text(header + m.genotype.to_yaml(name=m.name))
        paths.append(p)
    return paths


def format_table(members: list[Member], base_macs: int | None = None,
                 latencies: list[float | None] | None = None) -> str:
    """A readable Markdown table of a family (with predicted latency when given)."""
    head = "| name | phi | width | depth | resolution | params | MACs |"
    sep = "|---|---:|---:|---:|---:|---:|---:|"
    if base_macs:
        head += " MACs / base | 2^phi |"
        sep += "---:|---:|"
    show_lat = latencies is not None and any(v is not None for v in latencies)
    if show_lat:
        head += " latency (ms) |"
        sep += "---:|"
    lines = [head, sep]
    for i, m in enumerate(members):
        line = (f"| {m.name} | {_fmt(m.phi)} | {m.width:g} | {m.depth:g} | {m.resolution} | {m.params:,} | "
                f"{m.macs / 1e6:,.1f}M |")
        if base_macs:
            line += f" {m.macs / base_macs:.2f} | {2 ** m.phi:g} |"
        if show_lat:
            v = latencies[i]
            line += " - |" if v is None else f" {v:.3f} |"
        lines.append(line)
    return "\n".join(lines)


def latency_ms(lut: str | Path | None, g: Genotype) -> float | None:
    """Predicted latency (ms) of `g` at its own resolution from a LiteRT table; None without a table.

    Blocks the table lacks (scaled networks have new shapes) are measured on this host and
    added to the table; a table from another device then raises LatencyTableError.
    """
    if lut is None:
        return None
    from latency.predictor import Predictor

    return round(Predictor(_table(lut), resolution=g.resolution, measure_missing=True)(g), 6)


def family_latencies_ms(lut: str | Path | None, genotypes: Sequence[Genotype]) -> list[float] | None:
    """`latency_ms` of several networks, all read from one state of the table; None without a table.

    What any of them lacks is measured first: a new entry can lower the table's invoke overhead (the
    fastest entry caps it), so predicting one member before the next member's blocks were added would
    give numbers that a second reading of the saved table does not repeat.
    """
    if lut is None:
        return None
    from latency.predictor import Predictor

    table = _table(lut)
    missing = list(dict.fromkeys(k for g in genotypes for k in table.missing(g, g.resolution)))
    if missing:
        Predictor(table, measure_missing=True).measure(missing)
    return [latency_ms(lut, g) for g in genotypes]


def _table(lut: str | Path):
    from latency.predictor import open_table

    key = str(lut)
    if key not in _TABLES:
        _TABLES[key] = open_table(key)
    return _TABLES[key]


_TABLES: dict[str, object] = {}


def _fmt(x: float) -> str:
    return f"{x:g}"
