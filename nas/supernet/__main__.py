"""``python -m nas.supernet train|extract``: train a supernet, or write a member's weights.

    python -m nas.supernet train CONFIG [--set key=value ...] [--out DIR] [--resume] [--no-progress]
    python -m nas.supernet extract CHECKPOINT GENOTYPE --out weights.pt [--config CONFIG [--set ...]]

``train`` reads the same config as ``python -m nas.search`` (space, data, train and the
``supernet`` section) and writes ``DIR/train_state.pt`` (resumable), ``DIR/tensorboard/``,
``DIR/summary.json`` and the trained supernet at ``supernet.checkpoint`` (default
``DIR/supernet.pt``; DIR defaults to ``runs/<name>-supernet``). Under ``torchrun`` it trains
data-parallel on all processes.

``extract`` writes a member's state dict (``torch.load(..., weights_only=True)``), loadable by
``scaling.models.build(genotype, num_classes=..., weights=...)`` and exportable with
``python -m scaling export GENOTYPE --weights weights.pt --classes N ...``. With ``--config`` its
BatchNorm statistics are recalibrated on that config's training images first (recommended: the
supernet's running statistics are an average over all the members it trained).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from search_space.genotype import GenotypeError
from search_space.space import SpaceError

from ..errors import UserError


def _train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .train import train_supernet

    cfg = load_config(args.config, list(args.sets))
    s = train_supernet(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    if s.world_size > 1 and int(os.environ.get("RANK", "0")) != 0:
        return 0

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}%"

    print(f"supernet trained: {s.steps} steps ({s.epochs:.2f} epochs, {s.images:,} member-images) in "
          f"{s.train_s:.1f} s of training ({s.wall_s:.1f} s wall) on {s.world_size} process(es)\n"
          f"  largest member {pct(s.largest_acc)}, smallest {pct(s.smallest_acc)} (recalibrated, validation)\n"
          f"  -> {s.checkpoint}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    import torch

    from search_space.files import atomic_write_bytes
    from search_space.references import load_genotype

    from .checkpoint import load_supernet

    net, _ = load_supernet(args.checkpoint)
    g = load_genotype(args.genotype)
    try:
        net.check(g)
    except ValueError as e:
        raise SpaceError(str(e)) from None
    if args.config:
        from ..config import load_config
        from ..evaluate import Evaluator
        from ..train import select_device
        from .evaluator import SupernetScorer

        cfg = load_config(args.config, list(args.sets))
        ev = Evaluator(cfg.data, cfg.train)
        splits = ev.prepare(g.resolution)
        if (splits.num_classes, splits.in_channels) != (net.num_classes, net.in_channels):
            raise UserError(f"{args.config}: the data has {splits.num_classes} classes and {splits.in_channels} "
                            f"channels, the supernet {net.num_classes} and {net.in_channels}")
        scorer = SupernetScorer(dataclasses.replace(cfg.supernet, checkpoint=str(args.checkpoint)), cfg.train)
        scorer._net = net
        dev = select_device(cfg.train.device)
        model = scorer.model(g, splits, dev).cpu().to(memory_format=torch.contiguous_format)
        note = f"BatchNorm recalibrated on {sum(len(b) for b in scorer.calibration_batches(splits, dev))} images"
    else:
        model = net.extract(g)
        note = "BatchNorm statistics as in the supernet (pass --config CONFIG to recalibrate them)"
    import io

    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(args.out, buf.getvalue())
    if args.genotype_out:
        from search_space.files import atomic_write_text

        atomic_write_text(args.genotype_out, g.to_yaml(name=Path(args.genotype_out).stem))
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {g.to_string()} ({n:,} parameters, {net.num_classes} classes, "
          f"{net.in_channels} input channels); {note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m nas.supernet`."""
    p = argparse.ArgumentParser(prog="python -m nas.supernet", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the supernet of a config's space on its data")
    t.add_argument("config", help="search config YAML (space, data, train and supernet sections)")
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. supernet.epochs=50")
    t.add_argument("--out", help="training folder (default runs/<name>-supernet)")
    t.add_argument("--resume", action="store_true", help="continue the training in the folder")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)
    x = sub.add_parser("extract", help="write the state dict of one member with the supernet's weights")
    x.add_argument("checkpoint", help="supernet file (supernet.pt) or training state")
    x.add_argument("genotype", help="genotype string, genotype YAML file or reference name")
    x.add_argument("--out", required=True, help="state dict file to write (torch.save)")
    x.add_argument("--config", help="recalibrate BatchNorm on this config's training images first")
    x.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of --config (repeatable)")
    x.add_argument("--genotype-out", help="also write the genotype as YAML (for python -m scaling export)")
    x.set_defaults(func=_extract)
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; mistakes exit 2 with one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, SpaceError, GenotypeError, FileNotFoundError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "train":
            print(f"interrupted; continue with: python -m nas.supernet train {args.config} --resume"
                  + (f" --out {args.out}" if args.out else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
