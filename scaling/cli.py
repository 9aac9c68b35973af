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
from .family import compound_family, format_table, official_family, write_members


class CliError(Exception):
    """An error to print as one line, exit status 2."""


def _emit(args: argparse.Namespace) -> int:
    base = load_genotype(args.source)
    prefix = args.name or _prefix(args.source)
    if args.official:
        if any(v is not None for v in (args.alpha, args.beta, args.gamma, args.phi)):
            raise CliError("--official takes no --alpha/--beta/--gamma/--phi")
        members = official_family(base, prefix, args.classes, args.in_channels)
    else:
        alpha, beta, gamma = _coefficients(args)
        phis = args.phi if args.phi is not None else [1, 2, 3, 4, 5, 6, 7]
        members = compound_family(base, alpha, beta, gamma, phis, prefix, args.classes, args.in_channels)
    if args.out:
        paths = write_members(members, args.out)
        if not args.json:
            print(f"wrote {len(paths)} genotype files to {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps([m.row() for m in members], indent=2))
    else:
        base_macs = cost(base, in_channels=args.in_channels, num_classes=args.classes).macs
        print(format_table(members, base_macs))
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


def _coefficients(args: argparse.Namespace) -> tuple[float, float, float]:
    vals = dict(zip(("alpha", "beta", "gamma"), PAPER_COEFFICIENTS))
    if getattr(args, "coefficients", None):
        vals.update(_read_coefficients(args.coefficients))
    for k in vals:
        if getattr(args, k) is not None:
            vals[k] = getattr(args, k)
    for k, v in vals.items():
        if v < 1.0:
            raise CliError(f"--{k} must be >= 1, got {v}")
    return vals["alpha"], vals["beta"], vals["gamma"]


def _read_coefficients(path: str) -> dict[str, float]:
    import yaml
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise CliError(f"coefficients file {path!r} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    data = data.get("coefficients", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(k in data for k in ("alpha", "beta", "gamma")):
        raise CliError(f"{path}: expected keys alpha, beta and gamma")
    return {k: float(data[k]) for k in ("alpha", "beta", "gamma")}


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
    e.add_argument("--out", help="folder to write one genotype YAML per model")
    e.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    e.add_argument("--classes", type=int, default=1000, help="number of classes (default 1000)")
    e.add_argument("--in-channels", type=int, default=3, help="input channels (default 3)")
    e.add_argument("--name", help="name prefix of the emitted models")
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
    except (CliError, GenotypeError, ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
