"""`python -m scaling`: emit scaled families and export networks (the trained grid is `python -m nas.grid`)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from search_space.cost import check_size, cost
from search_space.genotype import GenotypeError
from search_space.references import load_genotype
from search_space.rounding import DIVISOR
from search_space.vocab import MAX_RESOLUTION
from search_space.yamlfile import read_yaml_file

from .compound import PAPER_COEFFICIENTS
from .family import compound_family, family_latencies_ms, format_table, official_family, write_members


class CliError(Exception):
    """An error to print as one line, exit status 2."""


def _emit(args: argparse.Namespace) -> int:
    _check_ints(args, "classes", "in_channels")
    for phi in args.phi or []:
        if not math.isfinite(phi):
            raise CliError(f"--phi {phi} is not allowed; allowed: finite numbers, e.g. --phi 1 2 3 (or 0.5, -1)")
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
    latencies = family_latencies_ms(args.lut, [m.genotype for m in members])
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

    _check_ints(args, "classes", "in_channels")
    _check_ints(args, "resolution", hi=MAX_RESOLUTION)
    if args.max_params is not None and not args.max_params > 0:
        raise CliError(f"--max-params {args.max_params} is not allowed; allowed: a number > 0 (inf for no limit)")
    g = load_genotype(args.source)
    res = args.resolution or g.resolution
    # The size at the export resolution, before anything is allocated (the build checks its own).
    check_size(g, res, args.in_channels, args.classes, max_params=args.max_params)
    model = build(g, num_classes=args.classes, in_channels=args.in_channels, weights=args.weights,
                  max_params=args.max_params).eval()
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


def _coefficients(args: argparse.Namespace) -> tuple[float, float, float, int, list[float] | None]:
    vals: dict = dict(zip(("alpha", "beta", "gamma"), PAPER_COEFFICIENTS), divisor=DIVISOR, phis=None)
    if getattr(args, "coefficients", None):
        vals.update(_read_coefficients(args.coefficients))
        args._file_classes = vals.pop("num_classes", None)
        args._file_in_channels = vals.pop("in_channels", None)
    for k in ("alpha", "beta", "gamma", "divisor"):
        if getattr(args, k, None) is not None:
            vals[k] = getattr(args, k)
    for k in ("alpha", "beta", "gamma"):
        if not (math.isfinite(vals[k]) and vals[k] >= 1.0):
            raise CliError(f"--{k} {vals[k]} is not allowed; allowed: a finite number >= 1")
    if vals["divisor"] < 1:
        raise CliError(f"--divisor {vals['divisor']} is not allowed; allowed: an integer >= 1")
    if vals["phis"] and not all(math.isfinite(v) for v in vals["phis"]):
        raise CliError(f"{args.coefficients}: phis {vals['phis']} are not allowed; allowed: finite numbers")
    return vals["alpha"], vals["beta"], vals["gamma"], int(vals["divisor"]), vals["phis"]


def _read_coefficients(path: str) -> dict:
    data = read_yaml_file(path, CliError, "coefficients file") or {}
    data = data.get("coefficients", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(k in data for k in ("alpha", "beta", "gamma")):
        raise CliError(f"{path}: expected keys alpha, beta and gamma")

    def num(key: str, kind: type) -> Any:
        v = data[key]
        if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                or (kind is int and v != int(v))):
            raise CliError(f"{path}: key '{key}': {v!r} is not allowed; allowed: a number")
        return kind(v)

    out: dict = {k: num(k, float) for k in ("alpha", "beta", "gamma")}
    for key in ("divisor", "in_channels", "num_classes"):
        if data.get(key) is not None:
            out[key] = num(key, int)
            if out[key] < 1:
                raise CliError(f"{path}: key '{key}': {out[key]} is not allowed; allowed: an integer >= 1")
    if data.get("phis"):
        phis = data["phis"]
        if not isinstance(phis, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in phis):
            raise CliError(f"{path}: key 'phis': {phis!r} is not allowed; allowed: a list of numbers")
        out["phis"] = [float(v) for v in phis]
    return out


def _check_ints(args: argparse.Namespace, *names: str, hi: int | None = None) -> None:
    """Flags that must be integers >= 1 (argparse only checks the type): one line naming the flag."""
    for name in names:
        v = getattr(args, name, None)
        if v is not None and not (v >= 1 and (hi is None or v <= hi)):
            allowed = "an integer >= 1" if hi is None else f"an integer in [1, {hi}]"
            raise CliError(f"--{name.replace('_', '-')} {v} is not allowed; allowed: {allowed}")


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
    e.add_argument("--coefficients", help="YAML file with alpha, beta, gamma (e.g. from `python -m nas.grid`)")
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
    x.add_argument("--max-params", type=float, metavar="N",
                   help="refuse networks with more parameters (default 2e9, or $HWNAS_MAX_PARAMS)")
    x.set_defaults(func=_export)
    return p


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
