"""Training the supernet: ``python -m nas.supernet train CONFIG [--set ...] [--out DIR] [--resume]``.

One step = one global batch and the members `sampling.step_members` picks for that step:

- ``sandwich`` (BigNAS): the largest member on the labels, then the smallest and
  ``num_random`` random members; with ``distill`` they learn the largest member's (detached)
  predictions instead of the labels (in-place distillation). Gradients of all of them are
  summed, then one optimizer step;
- ``uniform`` (Single-Path One-Shot): one random member on the labels.

Everything random in a step (its members, the batch, the augmentation) is a function of
``supernet.seed`` and the step number, so a training killed at any moment and resumed from its
last checkpoint (model, optimizer, BatchNorm buffers, step) takes exactly the steps the
uninterrupted run would have taken and ends with the same weights (on the CPU, same threads).

Optimizer, learning-rate schedule, batch size, augmentation, device, threads, bf16 autocast and
channels_last come from the ``train`` section, as for the proxy (`nas.train`'s helpers); the
length from ``supernet.epochs`` / ``supernet.steps``. Under ``torchrun`` every process trains on
its slice of each global batch and gradients are averaged with ``torch.distributed`` (gloo on
CPU, NCCL on CUDA) before the step; every rank samples the same members.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from search_space import SearchSpace
from search_space.files import atomic_write_text

from .. import runfolder
from ..config import Config
from ..data import Splits
from ..errors import UserError
from ..results import Diverged
from ..train import Normalizer, augment, configure_backend, lr_factor, make_optimizer, select_device, step_count
from .checkpoint import TRAIN_FORMAT, CheckpointError, read_payload, save_payload, save_supernet, supernet_payload
from .evaluator import SupernetScorer
from .net import SuperNet
from .sampling import largest, smallest, step_members

# Test hook: SIGKILL this process right after this many steps (a crash between checkpoints).
KILL_ENV = "HWNAS_SUPERNET_KILL_AFTER"
# Fingerprint keys added after the first version, with the behaviour of trainings that predate them.
LEGACY = {"supernet.balance_ops": False, "supernet.kernel_sharing": "centre", "supernet.lr": None}
STATE = "train_state.pt"


class TrainError(UserError):
    """A training folder that cannot be used as asked."""


@dataclass
class TrainSummary:
    """What a finished supernet training reports."""

    out: Path
    checkpoint: Path
    steps: int
    epochs: float
    wall_s: float
    train_s: float
    images: int
    largest_acc: float | None
    smallest_acc: float | None
    world_size: int


def fingerprint(cfg: Config, space: SearchSpace) -> dict[str, Any]:
    """What decides the trained weights: a resume must not change it."""
    train = dataclasses.asdict(cfg.train)
    for k in ("evaluator", "concurrent", "cuda_graphs", "threads", "eval_batch_size", "device"):
        train.pop(k, None)
    sn = dataclasses.asdict(cfg.supernet)
    for k in ("checkpoint", "checkpoint_every", "eval_every", "eval_images", "bn_batches", "bn_batch_size",
              "score_kernel"):
        sn.pop(k, None)
    return {"space": space.to_dict(), "data": dataclasses.asdict(cfg.data), "train": train, "supernet": sn}


def _seed_of(*parts: int) -> int:
    import hashlib

    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFFFFFF


class Dist:
    """This process's place among torchrun's (rank 0 of 1 without torchrun)."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = device
        self.active = self.world > 1
        if self.active:
            import torch.distributed as dist

            if device.type == "cuda":
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def average_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Average the gradients of `params` over all ranks (one flat all-reduce)."""
        if not self.active:
            return
        import torch.distributed as dist

        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        pos = 0
        for g in grads:
            g.copy_(flat[pos:pos + g.numel()].view_as(g))
            pos += g.numel()

    def same_everywhere(self, value: float) -> bool:
        """Whether every rank holds the same float (a check that the replicas stayed in sync)."""
        if not self.active:
            return True
        import torch.distributed as dist

        t = torch.tensor([value, -value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t[0].item() == value and -t[1].item() == value)

    def close(self) -> None:
        if self.active:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross entropy against a distribution (in-place distillation's loss)."""
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(1).mean()


class SupernetTrainer:
    """One supernet training in a folder: the step loop with its checkpoints, curves and evaluations."""

    def __init__(self, cfg: Config, out: Path, progress: bool = True, splits: Splits | None = None) -> None:
        self.cfg = cfg
        self.sn = cfg.supernet
        self.out = Path(out)
        self.progress = progress
        self.space = SearchSpace.from_yaml(cfg.space)
        self.dist = Dist(select_device(cfg.train.device))
        self.device = self.dist.device
        configure_backend(self.device, cfg.train.threads, cfg.train.cudnn_benchmark)
        if splits is None:
            from ..evaluate import Evaluator

            ev = Evaluator(cfg.data, cfg.train)
            ev.train_cfg = dataclasses.replace(cfg.train, device=str(self.device.type))
            splits = ev.prepare(self.space.resolution)
            if self.device.type == "cuda" and splits.x_train.device != self.device:
                splits = dataclasses.replace(splits, x_train=splits.x_train.to(self.device),
                                             y_train=splits.y_train.to(self.device))
        self.splits = splits
        self.checkpoint = Path(self.sn.checkpoint) if self.sn.checkpoint else self.out / "supernet.pt"
        self.fp = fingerprint(cfg, self.space)

    # ---- checkpoints ------------------------------------------------------------------------
    def _state(self, net: SuperNet, opt: torch.optim.Optimizer, step: int, meta: dict[str, Any]) -> dict[str, Any]:
        payload = supernet_payload(net, self.cfg.train.bn_momentum, meta)
        payload.update(format=TRAIN_FORMAT, step=step, optimizer=_cpu(opt.state_dict()), fingerprint=self.fp)
        return payload

    def _load_state(self, net: SuperNet, opt: torch.optim.Optimizer) -> tuple[int, dict[str, Any]]:
        path = self.out / STATE
        if not path.is_file():
            return 0, {}
        obj = read_payload(path, expect=TRAIN_FORMAT)
        old = {**LEGACY, **runfolder.flatten(obj.get("fingerprint", {}))}  # keys added later: their old values
        diff = runfolder.differences(old, runfolder.flatten(self.fp))
        if diff:
            shown = runfolder.describe(old, runfolder.flatten(self.fp), diff, limit=3)
            raise TrainError(f"cannot resume {self.out}: the config differs from the one it was trained with "
                             f"in {shown}; resume with the same config or use a new --out")
        net.load_state_dict(obj["model"])
        opt.load_state_dict(obj["optimizer"])
        return int(obj["step"]), dict(obj.get("meta", {}))

    # ---- evaluation -----------------------------------------------------------------------------
    def _evaluate(self, net: SuperNet, big: Any, small: Any) -> dict[str, float]:
        # the curves follow the largest and smallest members themselves, whatever the search scores
        scorer = SupernetScorer(dataclasses.replace(self.sn, checkpoint="<in memory>", score_kernel="member"),
                                self.cfg.train)
        scorer._net = net
        out = {}
        was = net.training
        net.eval()
        for role, g in (("largest", big), ("smallest", small)):
            r = scorer.score(g, 0, self.splits, self.device, limit=self.sn.eval_images)
            out[role] = r.accuracy if r.ok else float("nan")
        net.train(was)
        return out

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> TrainSummary:
        """Train (or continue) to the configured length; writes the final supernet file."""
        cfg, sn, dist, dev = self.cfg, self.sn, self.dist, self.device
        start_wall = time.perf_counter()
        s = self.splits
        n = len(s.y_train)
        # (global batch, steps per epoch, total steps) as the proxy counts them, for the supernet's length
        bs, per_epoch, total = step_count(n, dataclasses.replace(cfg.train, epochs=sn.epochs, steps=sn.steps))
        if bs % dist.world:
            raise TrainError(f"train.batch_size {bs} must be a multiple of the {dist.world} processes")
        local = bs // dist.world
        torch.manual_seed(sn.seed)
        net = SuperNet(self.space, s.num_classes, s.in_channels, cfg.train.bn_momentum, sn.kernel_sharing).to(dev)
        opt = make_optimizer(net, cfg.train)
        step, meta = self._load_state(net, opt) if resume else (0, {})
        params = list(net.parameters())
        lr_of = lr_factor(cfg.train.schedule, total, cfg.train.warmup)
        base_lr, lr_key = (cfg.train.lr, "train.lr") if sn.lr is None else (sn.lr, "supernet.lr")
        norm = Normalizer(s.mean, s.std, dev, cfg.train.channels_last)
        amp = cfg.train.amp and dev.type == "cuda"
        big, small = largest(self.space), smallest(self.space)
        eval_every = sn.eval_every or per_epoch
        tb = bar = None
        if dist.main:
            from torch.utils.tensorboard import SummaryWriter
            from tqdm import tqdm

            tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=step, flush_secs=30)
            bar = tqdm(total=total, initial=step, desc="supernet", unit="step", disable=not self.progress,
                       file=sys.stderr, dynamic_ncols=True, mininterval=1.0)
        train_s = float(meta.get("train_s", 0.0))
        images = int(meta.get("images", 0))
        accs: dict[str, float] = dict(meta.get("accuracy", {}))
        kill_after = int(os.environ.get(KILL_ENV, "0") or 0)
        x_all, y_all = s.x_train, s.y_train
        net.train()
        try:
            while step < total:
                t0 = time.perf_counter()
                epoch, pos = divmod(step, per_epoch)
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(_seed_of(sn.seed, epoch)))
                idx = perm[pos * bs:(pos + 1) * bs][dist.rank * local:(dist.rank + 1) * local]
                gen = torch.Generator().manual_seed(_seed_of(sn.seed, step, dist.rank))
                idx_d = idx.to(x_all.device)
                xb = norm(augment(x_all[idx_d].to(dev, non_blocking=True), gen, cfg.train.flip, cfg.train.crop_pad))
                yb = y_all[idx_d].to(dev, non_blocking=True).long()
                for group in opt.param_groups:
                    group["lr"] = base_lr * lr_of(step)
                opt.zero_grad(set_to_none=True)
                teacher = None
                losses: dict[str, list[float]] = {}
                members = step_members(self.space, sn.sampling, sn.num_random, sn.seed, step, big, small,
                                       sn.balance_ops)
                for role, g in members:
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                        logits = net(xb, g).float()
                    if teacher is not None:
                        loss = soft_cross_entropy(logits, teacher)
                    else:
                        loss = F.cross_entropy(logits, yb, label_smoothing=cfg.train.label_smoothing)
                    if role == "largest" and sn.distill and sn.sampling == "sandwich":
                        teacher = logits.detach().softmax(1)
                    if not torch.isfinite(loss):
                        raise Diverged(f"supernet loss became {loss.item()} at step {step + 1} ({role} member "
                                       f"{g.to_string()}); lower {lr_key}")
                    loss.backward()
                    losses.setdefault(role, []).append(float(loss.item()))
                dist.average_grads(params)
                opt.step()
                step += 1
                images += bs * len(members)
                train_s += time.perf_counter() - t0
                if tb is not None:
                    for role, v in losses.items():
                        tb.add_scalar(f"loss/{role}", sum(v) / len(v), step)
                    tb.add_scalar("lr", base_lr * lr_of(step - 1), step)
                if step % eval_every == 0 or step == total:
                    if dist.main:
                        accs = self._evaluate(net, big, small)
                        for role, v in accs.items():
                            tb.add_scalar(f"accuracy/{role}", v, step)
                        tb.flush()
                        bar.set_postfix_str(f"largest {100 * accs['largest']:.1f}% smallest "
                                            f"{100 * accs['smallest']:.1f}%", refresh=False)
                    dist.barrier()
                meta = {"train_s": train_s, "images": images, "accuracy": accs, "total_steps": total,
                        "steps_per_epoch": per_epoch, "batch_size": bs, "world_size": dist.world}
                if step % sn.checkpoint_every == 0 or step == total:
                    if dist.main:
                        save_payload(self.out / STATE, self._state(net, opt, step, meta))
                    dist.barrier()
                if bar is not None:
                    bar.update(1)
                if kill_after and step >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
            checksum = float(sum(p.detach().double().sum().item() for p in params))
            if not dist.same_everywhere(checksum):
                raise RuntimeError("the supernet replicas diverged between processes")
            if dist.main:
                meta.update(steps=step, epochs=step * bs / n, sampling=sn.sampling, num_random=sn.num_random,
                            distill=sn.distill, balance_ops=sn.balance_ops, kernel_sharing=sn.kernel_sharing,
                            seed=sn.seed, checksum=checksum)
                save_supernet(self.checkpoint, net, cfg.train.bn_momentum, meta)
                summary = {k: v for k, v in meta.items()}
                summary.update(checkpoint=str(self.checkpoint), wall_s=time.perf_counter() - start_wall)
                atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
            dist.barrier()
        finally:
            if bar is not None:
                bar.close()
            if tb is not None:
                tb.close()
        return TrainSummary(self.out, self.checkpoint, step, step * bs / n, time.perf_counter() - start_wall,
                            train_s, images, accs.get("largest"), accs.get("smallest"), dist.world)


def _cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj


def default_out(cfg: Config) -> Path:
    """Where a supernet training lives by default: ``runs/<name>-supernet``."""
    return (Path("runs") / f"{cfg.name}-supernet").resolve()


def open_train_dir(cfg: Config, out: Path, resume: bool) -> Path:
    """Create the training folder (fresh) or check there is something to resume."""
    if resume:
        if not (out / STATE).is_file() and out.exists() and any(out.iterdir()):
            raise TrainError(f"cannot resume {out}: it has no {STATE}")
    elif out.exists() and any(out.iterdir()):
        raise TrainError(f"training folder {out} exists and is not empty; continue it with --resume or choose "
                         f"another with --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def train_supernet(cfg: Config, out: str | Path | None = None, resume: bool = False, progress: bool = True,
                   splits: Splits | None = None) -> TrainSummary:
    """Train (or resume) the supernet of cfg's space on cfg's data; returns the summary."""
    out = Path(out).resolve() if out else default_out(cfg)
    dist_main = int(os.environ.get("RANK", "0")) == 0
    if dist_main:
        open_train_dir(cfg, out, resume)
    trainer = SupernetTrainer(cfg, out, progress=progress, splits=splits)
    try:
        return trainer.run(resume=resume)
    finally:
        trainer.dist.close()


__all__ = ["train_supernet", "SupernetTrainer", "TrainSummary", "TrainError", "fingerprint",
           "soft_cross_entropy", "default_out", "KILL_ENV", "CheckpointError"]
