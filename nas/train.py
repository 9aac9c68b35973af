"""Proxy training of one network: a plain, deterministic loop over tensors already in memory.

Images stay uint8 (on the GPU when they fit) and are normalised, flipped and cropped per batch
on the device. bf16 autocast and channels_last on CUDA; channels_last and a thread count equal
to the physical cores on CPU. A non-finite loss raises `Diverged` so the caller can end that
candidate with reward 0 and go on.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data import Splits


class Diverged(RuntimeError):
    """Training produced a NaN or infinite loss (or non-finite outputs)."""


@dataclass(frozen=True)
class TrainOutcome:
    """What a finished training run reports."""

    steps: int
    epochs: float
    final_loss: float
    train_time_s: float


def physical_cores() -> int:
    """Physical CPU cores available to this process (hyper-threads do not speed up convolutions)."""
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        cores = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    phys = val.strip()
                elif key == "core id":
                    core = val.strip()
                elif not line.strip() and core is not None:
                    cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
        if cores:
            return max(1, min(logical, len(cores)))
    except OSError:
        pass
    return max(1, logical)


def select_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def configure_backend(device: torch.device, threads: int | None, cudnn_benchmark: bool) -> None:
    """Thread count on CPU; cudnn autotuning (off by default: it costs more than it saves per candidate)."""
    if device.type == "cpu":
        torch.set_num_threads(threads or physical_cores())
    else:
        torch.backends.cudnn.benchmark = cudnn_benchmark


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, RMSprop (the TF EfficientNet setting) or AdamW; no decay on BN/biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, eps=1e-3, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def lr_factor(schedule: str, total: int, warmup: float) -> Callable[[int], float]:
    """The LR multiplier per step: linear warm-up, then cosine or linear decay to 0, or constant."""
    warm = int(round(warmup * total))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if schedule == "constant":
            return 1.0
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * t)) if schedule == "cosine" else max(0.0, 1.0 - t)

    return f


def augment(x: torch.Tensor, gen: torch.Generator, flip: bool, crop_pad: int) -> torch.Tensor:
    """Per-sample random horizontal flips and random crops of zero-padded images, on x's device."""
    n, c, h, w = x.shape
    if flip:
        mask = (torch.rand(n, generator=gen) < 0.5).to(x.device).view(n, 1, 1, 1)
        x = torch.where(mask, x.flip(3), x)
    if crop_pad:
        p = crop_pad
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    return x


class Normalizer:
    """uint8 images -> normalised float, per channel, as one multiply-add."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 channels_last: bool) -> None:
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1) / std_t
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addcmul(self.shift, x.float(), self.scale)
        return y.contiguous(memory_format=torch.channels_last) if self.channels_last else y


def train_model(model: nn.Module, splits: Splits, cfg: TrainConfig, seed: int,
                device: torch.device) -> TrainOutcome:
    """Train `model` (already on `device`) on the training split for cfg.steps or cfg.epochs."""
    n = len(splits.y_train)
    bs = min(cfg.batch_size, n)
    per_epoch = max(1, n // bs)  # drop the last partial batch: BatchNorm dislikes a batch of 1
    total = cfg.steps if cfg.steps else max(1, math.ceil(cfg.epochs * per_epoch))
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.schedule, total, cfg.warmup))
    norm = Normalizer(splits.mean, splits.std, device, cfg.channels_last)
    gen = torch.Generator().manual_seed(seed)  # CPU generator: same stream on every device
    amp = cfg.amp and device.type == "cuda"
    sync_every = 1 if device.type == "cpu" else 25  # a GPU sync per step would stall the queue
    x_all, y_all = splits.x_train, splits.y_train
    model.train()
    bad = torch.zeros((), dtype=torch.bool, device=device)
    loss = torch.zeros((), device=device)
    perm = torch.randperm(n, generator=gen)
    pos = 0
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for step in range(total):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + bs]
        pos += bs
        idx_d = idx.to(x_all.device)
        xb = norm(augment(x_all[idx_d].to(device, non_blocking=True), gen, cfg.flip, cfg.crop_pad))
        yb = y_all[idx_d].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb)
        loss = F.cross_entropy(out.float(), yb, label_smoothing=cfg.label_smoothing)
        bad |= ~torch.isfinite(loss)
        if (step + 1) % sync_every == 0 or step + 1 == total:
            if bool(bad):
                raise Diverged(f"loss became {loss.item()} by step {step + 1} of {total} (lr {cfg.lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return TrainOutcome(steps=total, epochs=total * bs / n, final_loss=float(loss.item()), train_time_s=elapsed)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, splits: Splits, cfg: TrainConfig,
             device: torch.device) -> float:
    """Top-1 accuracy on (x, y) in eval mode; non-finite outputs raise Diverged."""
    model.eval()
    norm = Normalizer(splits.mean, splits.std, device, cfg.channels_last)
    amp = cfg.amp and device.type == "cuda"
    correct = torch.zeros((), dtype=torch.long, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    for i in range(0, len(y), cfg.eval_batch_size):
        xb = norm(x[i:i + cfg.eval_batch_size].to(device, non_blocking=True))
        yb = y[i:i + cfg.eval_batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb)
        finite &= torch.isfinite(out).all()
        correct += (out.argmax(1) == yb).sum()
    if not bool(finite):
        raise Diverged("the trained network outputs NaN/inf on the validation split")
    return int(correct) / max(1, len(y))


__all__ = ["Diverged", "TrainOutcome", "physical_cores", "select_device", "configure_backend", "make_optimizer",
           "lr_factor", "augment", "Normalizer", "train_model", "accuracy"]
