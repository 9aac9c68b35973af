"""`python -m scaling`: emit scaled families (and, with later subcommands, grid search and export)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from search_space.cost import cost
from search_space.genotype import GenotypeError
from search_space.references import load_genotype

from .compound import PAPER_COEFFICIENTS
from .family import compound_family, format_table, latency_ms, official_family, write_members


class CliError(Exception):
    """An error to print as one line, exit status 2."""


def _emit(args: argparse.Namespace) -> int:
    base = load_genotype(args.source)
    prefix = args.name or _prefix(args.source)
    if args.official:
        if any(v is not None for v in (args.alpha, args.beta, args.gamma, args.phi)):
            raise CliError("--official takes no --alpha/--beta/--gamma/--phi")
        members = official_family(base, prefix, args.classes or 1000, args.in_channels or 3)
    else:
        alpha, beta, gamma, divisor, file_phis = _coefficients(args)
        phis = args.phi or file_phis or [1, 2, 3, 4, 5, 6, 7]
        classes = args.classes or getattr(args, "_file_classes", None) or 1000
        in_ch = args.in_channels or getattr(args, "_file_in_channels", None) or 3
        members = compound_family(base, alpha, beta, gamma, phis, prefix, classes, in_ch, divisor)
    if args.out:
        paths = write_members(members, args.out)
        if not args.json:
            print(f"wrote {len(paths)} genotype files to {args.out}", file=sys.stderr)
    latencies = [latency_ms(args.lut, m.genotype) for m in members] if args.lut else None
    if args.json:
        rows = [m.row() for m in members]
        for row, ms in zip(rows, latencies or []):
            row["latency_ms"] = ms
        print(json.dumps(rows, indent=2))
    else:
        base_macs = cost(base, in_channels=members[0].in_channels, num_classes=members[0].num_classes).macs
        print(format_table(members, base_macs, latencies))
    return 0


def _export(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .export import export, run_exported
    from .models import build

    g = load_genotype(args.source)
    res = args.resolution or g.resolution
    model = build(g, num_classes=args.classes, in_channels=args.in_channels, weights=args.weights).eval()
    path = export(model, res, args.format, args.out, args.in_channels)
    print(f"wrote {path} ({path.stat().st_size:,} bytes, {args.format}, input {args.in_channels}x{res}x{res})")
    if not args.no_check:
        x = np.random.default_rng(0).standard_normal((2, args.in_channels, res, res)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        diff = float(np.abs(run_exported(path, args.format, x) - ref).max())
        print(f"max abs difference to PyTorch on random inputs: {diff:.2e}")
        if diff > 1e-4:
            raise CliError(f"exported outputs differ from PyTorch by {diff:.2e} (> 1e-4)")
    return 0


def _grid(args: argparse.Namespace) -> int:
    # The grid trains networks, so this subcommand uses the search's proxy trainer (nas); the
    # rest of the scaling package does not depend on nas.
    from pathlib import Path

    from nas.grid import load_grid_config, run_grid

    base = load_genotype(args.baseline)
    cfg = load_grid_config(args.config, args.set)
    out = Path(args.out or cfg.out or Path("runs") / f"{cfg.name}-grid")
    s = run_grid(base, cfg.data, cfg.train, cfg.scaling, out, resume=args.resume, progress=not args.quiet,
                 executor=cfg.executor)
    print(Path(s.report_path).read_text())
    b = s.best
    print(f"chosen: alpha={b['alpha']:.2f} beta={b['beta']:.2f} gamma={b['gamma']:.2f} "
          f"(accuracy {b['accuracy']:.4f}, {b['macs_ratio']:.2f}x the baseline's MACs) -> {s.coefficients_path}")
    return 0


def _coefficients(args: argparse.Namespace) -> tuple[float, float, float, int, list[float] | None]:
    vals: dict = dict(zip(("alpha", "beta", "gamma"), PAPER_COEFFICIENTS), divisor=8, phis=None)
    if getattr(args, "coefficients", None):
        vals.update(_read_coefficients(args.coefficients))
        args._file_classes = vals.pop("num_classes", None)
        args._file_in_channels = vals.pop("in_channels", None)
    for k in ("alpha", "beta", "gamma", "divisor"):
        if getattr(args, k, None) is not None:
            vals[k] = getattr(args, k)
    for k in ("alpha", "beta", "gamma"):
        if vals[k] < 1.0:
            raise CliError(f"--{k} must be >= 1, got {vals[k]}")
    if vals["divisor"] < 1:
        raise CliError(f"--divisor must be >= 1, got {vals['divisor']}")
    return vals["alpha"], vals["beta"], vals["gamma"], int(vals["divisor"]), vals["phis"]


def _read_coefficients(path: str) -> dict:
    import yaml
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise CliError(f"coefficients file {path!r} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    data = data.get("coefficients", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(k in data for k in ("alpha", "beta", "gamma")):
        raise CliError(f"{path}: expected keys alpha, beta and gamma")
    out: dict = {k: float(data[k]) for k in ("alpha", "beta", "gamma")}
    if "divisor" in data:
        out["divisor"] = int(data["divisor"])
    if data.get("in_channels"):
        out["in_channels"] = int(data["in_channels"])
    if data.get("num_classes"):
        out["num_classes"] = int(data["num_classes"])
    if data.get("phis"):
        out["phis"] = [float(v) for v in data["phis"]]
    return out


def _prefix(source: str) -> str:
    from pathlib import Path

    name = Path(source).stem if source.endswith((".yaml", ".yml")) else source
    return name.removesuffix("-b0") if name.startswith("efficientnet") else name


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m scaling`."""
    p = argparse.ArgumentParser(prog="python -m scaling", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("emit", help="emit a scaled family of a genotype")
    e.add_argument("source", help="reference name (efficientnet-b0, mnasnet-a1, mobilenet-v2) or genotype YAML")
    e.add_argument("--official", action="store_true", help="the released B0..B7 width/depth/resolution")
    e.add_argument("--alpha", type=float, help="depth coefficient (default 1.2)")
    e.add_argument("--beta", type=float, help="width coefficient (default 1.1)")
    e.add_argument("--gamma", type=float, help="resolution coefficient (default 1.15)")
    e.add_argument("--coefficients", help="YAML file with alpha, beta, gamma (e.g. from `scaling grid`)")
    e.add_argument("--phi", type=float, nargs="+", help="compound coefficients to emit (default 1..7)")
    e.add_argument("--divisor", type=int, help="channel multiple (default 8, as in the official code)")
    e.add_argument("--out", help="folder to write one genotype YAML per model")
    e.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    e.add_argument("--classes", type=int, help="number of classes (default: the coefficients file's, else 1000)")
    e.add_argument("--in-channels", type=int, help="input channels (default: the coefficients file's, else 3)")
    e.add_argument("--name", help="name prefix of the emitted models")
    e.add_argument("--lut", help="LiteRT latency table: adds predicted latency (blocks it lacks are measured here)")
    e.set_defaults(func=_emit)
    x = sub.add_parser("export", help="export a genotype (with trained weights) to ONNX, TFLite or TorchScript")
    x.add_argument("source", help="genotype YAML (or reference name)")
    x.add_argument("--weights", help="state dict saved with torch.save (loaded with weights_only=True)")
    x.add_argument("--format", required=True, choices=["onnx", "tflite", "torchscript"])
    x.add_argument("--out", required=True, help="output file")
    x.add_argument("--resolution", type=int, help="input size (default: the genotype's resolution)")
    x.add_argument("--classes", type=int, default=1000, help="number of classes (default 1000)")
    x.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    x.add_argument("--no-check", action="store_true", help="skip comparing the file's outputs with PyTorch")
    x.set_defaults(func=_export)
    gr = sub.add_parser("grid", help="step 1: train the (alpha, beta, gamma) grid at phi = 1 and choose")
    gr.add_argument("baseline", help="baseline genotype YAML (e.g. runs/mnas/best.yaml) or reference name")
    gr.add_argument("--config", required=True, help="grid config YAML: data, train and scaling sections")
    gr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    gr.add_argument("--out", help="run folder (default runs/<config name>-grid)")
    gr.add_argument("--resume", action="store_true", help="continue an interrupted grid run")
    gr.add_argument("--quiet", action="store_true", help="no progress bar")
    gr.set_defaults(func=_grid)
    for register in EXTRA_COMMANDS:
        register(sub)
    return p


# Later subcommands (grid, export) register themselves here.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; errors print one line and return 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except (CliError, GenotypeError, ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
