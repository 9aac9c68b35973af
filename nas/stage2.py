"""Stage 2: ``python -m nas.train GENOTYPE --config CONFIG [--set ...] --out DIR [--resume]``.

Trains one genotype (a search's ``best.yaml``, a family member, a reference name or a genotype
string) for real with the ``stage2`` section of any search config: the EfficientNet recipe's
parts (RMSProp or SGD, linear warm-up then cosine, label smoothing, an EMA of the weights,
dropout, drop-connect growing with depth, crop and flip, optional Cutout), in the project's one
training loop (`nas.train.Trainer`, the proxy's loop with hooks). Data come from the ``data``
section at the genotype's resolution (``stage2.data`` overrides keys); device, threads, bf16 and
channels_last from ``train``.

Every epoch ends with the validation accuracy of the EMA weights and an atomic checkpoint
(model, EMA, optimizer, scheduler, random generators, epoch, best so far), so a run killed at any
moment continues with ``--resume`` exactly where the last epoch ended (bit for bit on the CPU).
The folder gets ``best.pt`` (the EMA weights of the best validation epoch) and ``last.pt``, plain
state dicts for ``scaling.models.build(..., weights=...)`` and ``python -m scaling export``,
``genotype.yaml``, ``config.yaml``, ``tensorboard/`` and ``result.json``. This is the only
command that opens a test split: once, after training, to score ``best.pt`` (docs/train.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from search_space.cost import cost
from search_space.files import atomic_write_bytes, atomic_write_text
from search_space.genotype import Genotype, GenotypeError
from search_space.model import build_model
from search_space.references import load_genotype
from search_space.space import SpaceError

from . import runfolder
from .config import Config, DataConfig, TrainConfig, check_data_paths, check_train, read_yaml
from .data import Splits, load_splits
from .errors import UserError
from .results import Diverged
from .schema import ConfigError, apply_sets, build
from .train import Trainer, WeightEMA, accuracy, configure_backend, select_device

FORMAT = "hwnas-stage2"
VERSION = 1
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
# Test hook: SIGKILL this process right after the checkpoint of this epoch (a crash between epochs).
KILL_ENV = "HWNAS_TRAIN_KILL_AFTER_EPOCHS"
# stage2 keys that choose what the pipeline trains, not how one network trains: outside the fingerprint.
PIPELINE_KEYS = ("top_k", "reference", "baseline_from")
# What a run writes before its first checkpoint: a run killed then has nothing to resume, so it starts anew.
BEFORE_FIRST_CHECKPOINT = ("genotype.yaml", "config.yaml", "tensorboard")


class Stage2Error(UserError):
    """A run folder, an --init or a checkpoint that cannot be used as asked."""


@dataclass
class Stage2Setup:
    """A validated stage-2 config: the whole config plus the data section stage 2 reads."""

    config: Config
    data: DataConfig
    source: str


@dataclass
class Stage2Result:
    """What a finished stage-2 run reports (also written to result.json)."""

    out: Path
    record: dict[str, Any]


# ---- config ---------------------------------------------------------------------------------------
def load_stage2_config(path: str | Path, sets: list[str] | None = None) -> Stage2Setup:
    """Read a config for stage 2 (any search config; ``space`` and ``objective`` are not needed)."""
    path = Path(path)
    src = str(path)
    raw, origins = apply_sets(Config, read_yaml(path), list(sets or []))
    cfg: Config = build(Config, raw, src, origins=origins)
    cfg.name = cfg.name or path.stem
    check_train(cfg.train, src)
    return setup_from_config(cfg, src, path.resolve().parent, origins)


def setup_from_config(cfg: Config, src: str, config_dir: Path | None = None,
                      origins: dict[str, str] | None = None) -> Stage2Setup:
    """Stage 2's view of an already loaded config (e.g. the pipeline's): the checked recipe and its data section."""
    origins = origins or {}
    s2 = cfg.stage2
    if s2.warmup_epochs >= s2.epochs:
        where = _blame(origins, ("stage2.warmup_epochs", "stage2.epochs"), src)
        raise ConfigError(f"{where}: key 'stage2.warmup_epochs': {s2.warmup_epochs} is out of range; allowed: "
                          f"0 <= value < stage2.epochs ({s2.epochs})")
    # The genotype's resolution (what the exported model takes) unless stage2.data sets one.
    merged = {**dataclasses.asdict(cfg.data), "resolution": None, **s2.data}
    data: DataConfig = build(DataConfig, merged, src, prefix="stage2.data.", origins=origins)
    for key in ("mean", "std"):
        vals = getattr(data, key)
        if vals is not None and (not vals or any(v <= 0 and key == "std" for v in vals)):
            name = f"stage2.data.{key}" if key in s2.data else f"data.{key}"
            raise ConfigError(f"{src}: key '{name}': {vals!r} must be a non-empty list (std > 0)")
    check_data_paths(data, config_dir or Path.cwd(), src)
    return Stage2Setup(config=cfg, data=data, source=src)


def _blame(origins: dict[str, str], keys: tuple[str, ...], default: str) -> str:
    return next((origins[k] for k in keys if k in origins), default)


def recipe(cfg: Config) -> TrainConfig:
    """Stage 2's recipe as the training loop's `TrainConfig`: the stage2 keys over train's machine settings."""
    s2, t = cfg.stage2, cfg.train
    return dataclasses.replace(
        t, epochs=float(s2.epochs), steps=None, batch_size=s2.batch_size, optimizer=s2.optimizer, lr=s2.lr,
        momentum=s2.momentum, weight_decay=s2.weight_decay, schedule=s2.schedule,
        warmup=s2.warmup_epochs / s2.epochs, label_smoothing=s2.label_smoothing, dropout=s2.dropout,
        drop_connect=s2.drop_connect, bn_momentum=s2.bn_momentum, flip=t.flip if s2.flip is None else s2.flip,
        crop_pad=t.crop_pad if s2.crop_pad is None else s2.crop_pad, evaluator="standard")


def parse_init(spec: str | None) -> dict[str, Any]:
    """``scratch`` or ``supernet:CHECKPOINT`` as a plain mapping (the supernet file's sha256 included)."""
    if spec in (None, "", "scratch"):
        return {"kind": "scratch"}
    kind, sep, value = spec.partition(":")
    if kind != "supernet" or not sep or not value:
        raise Stage2Error(f"--init {spec!r} is not allowed; allowed: scratch, supernet:CHECKPOINT "
                          f"(a file written by python -m nas.supernet train)")
    from .supernet.checkpoint import sha256_file

    p = Path(value).expanduser().resolve()
    if not p.is_file():
        raise Stage2Error(f"--init supernet:{value}: file {str(p)!r} does not exist")
    return {"kind": "supernet", "path": str(p), "sha256": sha256_file(p)}


def fingerprint(g: Genotype, setup: Stage2Setup, init: dict[str, Any]) -> dict[str, Any]:
    """What decides the trained weights: a resume must not change it."""
    s2 = {k: v for k, v in dataclasses.asdict(setup.config.stage2).items()
          if k not in ("test", "data", *PIPELINE_KEYS)}
    t = setup.config.train
    return {"genotype": g.to_string(), "data": dataclasses.asdict(setup.data), "stage2": s2,
            "amp": t.amp, "channels_last": t.channels_last, "init": {k: v for k, v in init.items() if k != "path"}}


# ---- model and data ---------------------------------------------------------------------------------
def make_model(g: Genotype, splits: Splits, cfg: Config, init: dict[str, Any]) -> nn.Module:
    """The network to train on the CPU: freshly initialised (seeded), or a supernet member's weights."""
    s2 = cfg.stage2
    opts = {"dropout": s2.dropout, "drop_connect": s2.drop_connect, "bn_momentum": s2.bn_momentum}
    torch.manual_seed(s2.seed)  # weights; then dropout and drop-connect masks
    if init["kind"] == "scratch":
        return build_model(g, num_classes=splits.num_classes, in_channels=splits.in_channels, **opts)
    from .supernet.checkpoint import load_supernet

    net, _ = load_supernet(init["path"])
    try:
        net.check(g)
    except ValueError as e:
        raise Stage2Error(f"--init supernet:{init['path']}: {e}") from None
    if (net.num_classes, net.in_channels) != (splits.num_classes, splits.in_channels):
        raise Stage2Error(f"--init supernet:{init['path']}: the supernet has {net.num_classes} classes and "
                          f"{net.in_channels} input channels, the data {splits.num_classes} and {splits.in_channels}")
    return net.extract(g, **opts).train()


def _on_device(s: Splits, dev: torch.device) -> Splits:
    """The splits on the GPU when they fit in half its free memory (else batches are copied per step)."""
    if dev.type != "cuda":
        return s
    need = sum(t.numel() * t.element_size() for t in (s.x_train, s.y_train, s.x_val, s.y_val))
    free, _ = torch.cuda.mem_get_info(dev)
    if need >= free // 2:
        return s
    return dataclasses.replace(s, x_train=s.x_train.to(dev), y_train=s.y_train.to(dev), x_val=s.x_val.to(dev),
                               y_val=s.y_val.to(dev))


def plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict on the CPU in the standard memory layout (what best.pt and last.pt hold)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_torch(path: Path, obj: Any) -> None:
    """torch.save into memory, then replace `path` atomically (a kill leaves the old file or the new one)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A stage-2 checkpoint read with weights_only=True; anything else is a one-line Stage2Error."""
    try:
        obj = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise Stage2Error(f"{path}: not a readable stage-2 checkpoint ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise Stage2Error(f"{path}: not a stage-2 checkpoint (written by python -m nas.train)")
    if int(obj.get("version", 0)) > VERSION:
        raise Stage2Error(f"{path}: checkpoint version {obj.get('version')} is newer than this code ({VERSION})")
    return obj


def open_out_dir(out: Path, resume: bool) -> dict[str, Any] | None:
    """Create the run folder (fresh) or find what to resume: the checkpoint, or None to start anew."""
    runfolder.check_out_dir(out, Stage2Error)
    busy = out.exists() and any(out.iterdir())
    if not resume:
        if busy:
            raise Stage2Error(f"run folder {out} exists and is not empty; continue it with --resume or choose "
                              f"another with --out")
        out.mkdir(parents=True, exist_ok=True)
        return None
    ckpt = out / CHECKPOINT
    if ckpt.is_file():
        return read_checkpoint(ckpt)
    if busy and not (out / RESULT).is_file() and not all(
            p.name in BEFORE_FIRST_CHECKPOINT or runfolder.is_leftover(p) for p in out.iterdir()):
        raise Stage2Error(f"cannot resume {out}: it has no {CHECKPOINT}")
    out.mkdir(parents=True, exist_ok=True)
    return None


# ---- the run ----------------------------------------------------------------------------------------
def train_genotype(g: Genotype, setup: Stage2Setup, out: str | Path, resume: bool = False,
                   init: str | None = None, progress: bool = True) -> Stage2Result:
    """Train `g` with the stage-2 recipe into folder `out` (or continue it); scores best.pt on the test split."""
    wall0 = time.perf_counter()
    out = Path(out).expanduser().resolve()
    cfg, s2 = setup.config, setup.config.stage2
    if resume and (out / RESULT).is_file():  # finished: the test split is not opened again
        record = json.loads((out / RESULT).read_text())
        if record.get("genotype") != g.to_string():
            raise Stage2Error(f"cannot resume {out}: it trained {record.get('genotype')}, not {g.to_string()}")
        return Stage2Result(out, record)
    init_spec = parse_init(init)
    fp = fingerprint(g, setup, init_spec)
    state = open_out_dir(out, resume)
    if state is not None and state.get("fingerprint") != fp:
        old = state.get("fingerprint", {})
        shown = runfolder.describe(old, fp, runfolder.differences(old, fp), limit=3)
        raise Stage2Error(f"cannot resume {out}: the run differs from the one it started as in {shown}; resume "
                          f"with the same genotype, config and --init, or use a new --out")
    rec = recipe(cfg)
    dev = select_device(cfg.train.device)
    configure_backend(dev, cfg.train.threads, cfg.train.cudnn_benchmark)
    splits = _on_device(load_splits(setup.data, g.resolution, hold_out_test=True), dev)
    if state is None:
        atomic_write_text(out / "genotype.yaml", g.to_yaml(name=out.name))  # for python -m scaling export
        atomic_write_text(out / "config.yaml", yaml.safe_dump(
            {"data": dataclasses.asdict(setup.data), "train": dataclasses.asdict(cfg.train),
             "stage2": dataclasses.asdict(s2), "init": init_spec, "source": setup.source}, sort_keys=False))
    model = make_model(g, splits, cfg, init_spec).to(dev)
    if rec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trainer = Trainer(model, splits, rec, s2.seed, dev, cutout=s2.cutout)
    ema = WeightEMA(model, s2.ema_decay) if s2.ema_decay else None
    scored = ema.model if ema is not None else model  # the weights evaluated and saved
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"accuracy": -1.0, "epoch": 0}
    best_state: dict[str, torch.Tensor] | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        trainer.load_state_dict(state["trainer"])
        history, best, best_state = list(state["history"]), dict(state["best"]), state["best_model"]
    per_epoch = trainer.steps_per_epoch
    kill_after = int(os.environ.get(KILL_ENV, "0") or 0)
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    done = trainer.step // per_epoch
    tb = SummaryWriter(str(out / "tensorboard"), purge_step=done + 1, flush_secs=30)
    bar = tqdm(total=trainer.total, initial=trainer.step, desc=f"stage 2 ({s2.epochs} epochs)", unit="step",
               disable=not progress, file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    loss_n = 0

    def on_step(tr: Trainer, loss: torch.Tensor) -> None:
        nonlocal loss_sum, loss_n
        if ema is not None:
            ema.update()
        loss_sum += loss.detach()
        loss_n += 1
        bar.update(1)

    def on_epoch(tr: Trainer) -> None:
        nonlocal loss_sum, loss_n, best_state
        epoch = -(-tr.step // per_epoch)
        val = accuracy(scored, splits.x_val, splits.y_val, splits, rec, dev)
        raw = accuracy(model, splits.x_val, splits.y_val, splits, rec, dev) if ema is not None else val
        row = {"epoch": epoch, "step": tr.step, "train_loss": float(loss_sum.item()) / max(1, loss_n),
               "lr": float(tr.scheduler.get_last_lr()[0]), "val_accuracy": val, "val_accuracy_raw": raw,
               "train_time_s": tr.train_time_s}
        loss_sum, loss_n = torch.zeros_like(loss_sum), 0
        history.append(row)
        improved = val > best["accuracy"]
        if improved:
            best.update(accuracy=val, epoch=epoch)
            best_state = plain_state(scored)
        save_torch(out / CHECKPOINT, _to_cpu({
            "format": FORMAT, "version": VERSION, "fingerprint": fp, "epoch": epoch, "model": model.state_dict(),
            "ema": ema.state_dict() if ema is not None else None, "trainer": tr.state_dict(), "history": history,
            "best": best, "best_model": best_state}))
        # After the checkpoint: a kill in between leaves files the resume rewrites identically.
        save_torch(out / "last.pt", plain_state(scored))
        if improved:
            save_torch(out / "best.pt", best_state)
        for key in ("train_loss", "lr", "val_accuracy", "val_accuracy_raw"):
            tb.add_scalar(f"stage2/{key}", row[key], epoch)
        tb.add_scalar("stage2/best_val_accuracy", best["accuracy"], epoch)
        tb.flush()
        bar.set_postfix_str(f"epoch {epoch} loss {row['train_loss']:.3f} val {100 * val:.2f}% "
                            f"best {100 * best['accuracy']:.2f}%", refresh=False)
        if kill_after and epoch >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        trainer.run(on_step=on_step, on_epoch=on_epoch)
    finally:
        bar.close()
        tb.close()
    if best_state is None:  # pragma: no cover - every run ends at least one epoch
        raise RuntimeError("no epoch finished")
    save_torch(out / "best.pt", best_state)
    save_torch(out / "last.pt", plain_state(scored))
    record = _record(g, setup, splits, trainer, history, best, init_spec, dev)
    if s2.test:
        record.update(score_test(g, setup, splits, out / "best.pt", rec, dev))
    record["wall_s"] = time.perf_counter() - wall0
    atomic_write_text(out / RESULT, json.dumps(record, indent=1) + "\n")
    tb = SummaryWriter(str(out / "tensorboard"))
    if record.get("test_accuracy") is not None:
        tb.add_scalar("stage2/test_accuracy", record["test_accuracy"], best["epoch"])
    tb.close()
    return Stage2Result(out, record)


def score_test(g: Genotype, setup: Stage2Setup, splits: Splits, weights: Path, rec: TrainConfig,
               dev: torch.device) -> dict[str, Any]:
    """Test accuracy of the weights file as `scaling.models.build` loads it: the one read of the test split."""
    from scaling.models import build

    from .data.test_split import load_test

    x, y = load_test(setup.data, splits.resolution)
    model = build(g, num_classes=splits.num_classes, in_channels=splits.in_channels, weights=weights).to(dev)
    if rec.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return {"test_accuracy": accuracy(model, x, y, splits, rec, dev), "test_images": len(y),
            "test_weights": weights.name}


def _record(g: Genotype, setup: Stage2Setup, splits: Splits, trainer: Trainer, history: list[dict[str, Any]],
            best: dict[str, Any], init: dict[str, Any], dev: torch.device) -> dict[str, Any]:
    c = cost(g, splits.resolution, in_channels=splits.in_channels, num_classes=splits.num_classes)
    s2 = setup.config.stage2
    return {
        "genotype": g.to_string(), "params": c.params, "macs": c.macs, "resolution": splits.resolution,
        "in_channels": splits.in_channels, "num_classes": splits.num_classes, "data": setup.data.source,
        "train_images": len(splits.y_train), "val_images": len(splits.y_val), "epochs": s2.epochs,
        "steps": trainer.step, "batch_size": trainer.batch_size, "seed": s2.seed, "init": init["kind"],
        "ema": s2.ema_decay is not None, "best_epoch": best["epoch"], "val_accuracy": best["accuracy"],
        "last_val_accuracy": history[-1]["val_accuracy"], "test_accuracy": None, "test_images": 0,
        "train_time_s": trainer.train_time_s, "device": str(dev),
        # What the exported network expects: uint8 pixels / 255, then (x - mean) / std per channel.
        "mean": list(splits.mean), "std": list(splits.std), "history": history,
    }


def summary(res: Stage2Result) -> str:
    """The lines printed on stdout at the end of a run."""
    r, out = res.record, res.out
    test = (f"{100 * r['test_accuracy']:.2f}% on {r['test_images']} images ({r.get('test_weights', 'best.pt')}, "
            f"the test split's one read)" if r.get("test_accuracy") is not None else "not measured (stage2.test: false)")
    g_file = out / "genotype.yaml"
    return (f"trained {r['genotype']} ({r['params']:,} params, {r['macs']:,} MACs at {r['resolution']}x"
            f"{r['resolution']}) for {r['epochs']} epochs ({r['steps']} steps, {r['train_time_s']:.1f} s)\n"
            f"  validation accuracy {100 * r['val_accuracy']:.2f}% ({'EMA, ' if r['ema'] else ''}best at epoch "
            f"{r['best_epoch']}; last epoch {100 * r['last_val_accuracy']:.2f}%)\n"
            f"  test accuracy       {test}\n"
            f"  -> {out / 'best.pt'}, {out / 'last.pt'}, {out / RESULT}\n"
            f"  export: python -m scaling export {g_file} --weights {out / 'best.pt'} --classes {r['num_classes']} "
            f"--in-channels {r['in_channels']} --format onnx --out model.onnx")


# ---- command line -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m nas.train`."""
    p = argparse.ArgumentParser(prog="python -m nas.train",
                                description="Stage 2: train one genotype for real (docs/train.md).")
    p.add_argument("genotype", help="genotype YAML (a search's best.yaml, a family member), reference name or string")
    p.add_argument("--config", required=True, help="config YAML: its data, train and stage2 sections")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable), e.g. stage2.epochs=50")
    p.add_argument("--out", help="run folder (required unless --check)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--init", default="scratch", metavar="SPEC",
                   help="scratch (default) or supernet:CHECKPOINT (start from the supernet's weights)")
    p.add_argument("--check", action="store_true", help="validate genotype, config and data, then exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; mistakes exit 2 with one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        g = load_genotype(args.genotype)
        setup = load_stage2_config(args.config, args.sets)
        if args.check:
            parse_init(args.init)
            s = load_splits(setup.data, g.resolution, hold_out_test=True)
            build_model(g, num_classes=s.num_classes, in_channels=s.in_channels)
            print(f"ok: {g.to_string()} on {setup.data.source} ({len(s.y_train)} training, {len(s.y_val)} "
                  f"validation images at {s.resolution}x{s.resolution}, {s.num_classes} classes)")
            return 0
        if not args.out:
            raise Stage2Error("--out DIR is required: the run folder for checkpoints, weights and result.json")
        res = train_genotype(g, setup, args.out, resume=args.resume, init=args.init, progress=not args.quiet)
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except (UserError, GenotypeError, SpaceError, FileNotFoundError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"error: training diverged: {' '.join(str(e).split())}; lower stage2.lr", file=sys.stderr)
        return 1
    print(summary(res))
    return 0


__all__ = ["load_stage2_config", "setup_from_config", "recipe", "train_genotype", "score_test", "parse_init",
           "fingerprint", "main", "Stage2Setup", "Stage2Result", "Stage2Error", "KILL_ENV", "CHECKPOINT", "FORMAT",
           "PIPELINE_KEYS", "RESULT"]


if __name__ == "__main__":  # also `python -m nas.train` (nas/train/__main__.py)
    sys.exit(main())
