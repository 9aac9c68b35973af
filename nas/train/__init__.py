"""The training loop of the project: a plain, deterministic loop over tensors already in memory.

`Trainer` is the one loop: the proxy evaluator runs it bare for a search's short budget
(`train_model`), stage 2 (`python -m nas.train`, `nas.stage2`) with its own recipe plus an EMA
of the weights, per-epoch evaluation and resumable checkpoints through its hooks.

Images stay uint8 (on the GPU when they fit) and are normalised, flipped and cropped per batch
on the device. bf16 autocast and channels_last on CUDA; channels_last and a thread count equal
to the physical cores on CPU. A non-finite loss raises `Diverged` so the caller can end that
candidate with reward 0 and go on.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..data import Splits
from ..results import Diverged


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


def step_count(n: int, cfg: TrainConfig) -> tuple[int, int, int]:
    """(batch size, steps per epoch, total steps) of a training run over `n` images."""
    bs = min(cfg.batch_size, n)
    per_epoch = max(1, n // bs)  # drop the last partial batch: BatchNorm dislikes a batch of 1
    total = cfg.steps if cfg.steps else max(1, math.ceil(cfg.epochs * per_epoch))
    return bs, per_epoch, total


def normalizer_coefficients(mean: tuple[float, ...], std: tuple[float, ...],
                            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of shape (C,) that map uint8 pixels to normalised floats: x * scale + shift."""
    std_t = torch.tensor(std, dtype=torch.float32, device=device)
    return 1.0 / (255.0 * std_t), -torch.tensor(mean, dtype=torch.float32, device=device) / std_t


class Normalizer:
    """uint8 images -> normalised float, per channel, as one multiply-add."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 channels_last: bool) -> None:
        scale, shift = normalizer_coefficients(mean, std, device)
        self.scale, self.shift = scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addcmul(self.shift, x.float(), self.scale)
        return y.contiguous(memory_format=torch.channels_last) if self.channels_last else y


def cutout(x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): zero one `size` x `size` square per image at a random centre (clipped)."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=gen).to(x.device)
    cx = torch.randint(0, w, (n,), generator=gen).to(x.device)
    half = size // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    # The square covers [c - half, c - half + size); it runs into the border where the centre is near it.
    in_rows = (rows >= (cy - half)[:, None]) & (rows < (cy - half + size)[:, None])
    in_cols = (cols >= (cx - half)[:, None]) & (cols < (cx - half + size)[:, None])
    hole = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    # Applied to normalised images, so a zero is the training set's mean colour.
    return x.masked_fill(hole, 0.0)


class WeightEMA:
    """An exponential moving average of a model's weights and BatchNorm statistics (TF's EfficientNet EMA).

    The decay is min(decay, (1 + t) / (10 + t)) at update t, as `tf.train.ExponentialMovingAverage`
    with `num_updates`: early updates average over few steps, so short runs get a useful average.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        import copy

        self.decay = float(decay)
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        # state_dict tensors alias the live parameters and buffers, so these lists stay current.
        self._avg = [(e, m) for e, m in pairs if e.dtype.is_floating_point]
        self._copy = [(e, m) for e, m in pairs if not e.dtype.is_floating_point]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the live model."""
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        if self._avg:
            torch._foreach_lerp_([e for e, _ in self._avg], [m for _, m in self._avg], 1.0 - d)
        for e, m in self._copy:
            e.copy_(m)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count (plain tensors and ints)."""
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])


StepHook = Callable[["Trainer", torch.Tensor], None]
EpochHook = Callable[["Trainer"], None]


class Trainer:
    """The one training loop of the project: a network, its training split and a recipe (`TrainConfig`).

    The proxy evaluator runs it bare (`train_model`); stage 2 (`nas.stage2`) adds hooks for the
    EMA (`on_step`), per-epoch evaluation and checkpoints (`on_epoch`) and resumes it from
    `state_dict()`. Batches come from one CPU generator seeded with `seed` (epoch permutations,
    flips, crops, cutout), dropout and drop-connect from torch's global generator, so a loop
    restored from its state dict takes exactly the steps the uninterrupted one would have.
    """

    def __init__(self, model: nn.Module, splits: Splits, cfg: TrainConfig, seed: int, device: torch.device,
                 cutout: int = 0) -> None:
        self.model, self.splits, self.cfg, self.device = model, splits, cfg, device
        self.cutout = int(cutout)
        self.n = len(splits.y_train)
        self.batch_size, self.steps_per_epoch, self.total = step_count(self.n, cfg)
        self.optimizer = make_optimizer(model, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_factor(cfg.schedule, self.total, cfg.warmup))
        self.norm = Normalizer(splits.mean, splits.std, device, cfg.channels_last)
        self.gen = torch.Generator().manual_seed(seed)  # CPU generator: same stream on every device
        self.perm = torch.randperm(self.n, generator=self.gen)
        self.pos = 0
        self.step = 0
        self.train_time_s = 0.0

    @property
    def epoch(self) -> float:
        """Epochs done (steps / steps per epoch)."""
        return self.step / self.steps_per_epoch

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training batch: normalised, augmented images on the device and their labels."""
        bs, n, cfg = self.batch_size, self.n, self.cfg
        if self.pos + bs > n:
            self.perm, self.pos = torch.randperm(n, generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + bs]
        self.pos += bs
        x_all, y_all = self.splits.x_train, self.splits.y_train
        idx_d = idx.to(x_all.device)
        xb = self.norm(augment(x_all[idx_d].to(self.device, non_blocking=True), self.gen, cfg.flip, cfg.crop_pad))
        if self.cutout:
            xb = cutout(xb, self.gen, self.cutout)
        return xb, y_all[idx_d].to(self.device, non_blocking=True)

    def run(self, until: int | None = None, on_step: StepHook | None = None,
            on_epoch: EpochHook | None = None) -> TrainOutcome:
        """Train up to step `until` (default: the end); hooks run after every step / every finished epoch."""
        model, cfg, device = self.model, self.cfg, self.device
        stop = self.total if until is None else min(until, self.total)
        amp = cfg.amp and device.type == "cuda"
        sync_every = 1 if device.type == "cpu" else 25  # a GPU sync per step would stall the queue
        model.train()
        bad = torch.zeros((), dtype=torch.bool, device=device)
        loss = torch.zeros((), device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        hooks_s = 0.0
        while self.step < stop:
            step = self.step
            xb, yb = self.batch()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(xb)
            loss = F.cross_entropy(out.float(), yb, label_smoothing=cfg.label_smoothing)
            bad |= ~torch.isfinite(loss)
            epoch_end = (step + 1) % self.steps_per_epoch == 0
            if (step + 1) % sync_every == 0 or step + 1 == stop or epoch_end:
                if bool(bad):
                    raise Diverged(f"loss became {loss.item()} by step {step + 1} of {self.total} (lr {cfg.lr})",
                                   steps=step + 1, epochs=(step + 1) * self.batch_size / self.n)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            self.step = step + 1
            if on_step is not None:
                on_step(self, loss)
            if on_epoch is not None and (epoch_end or self.step == self.total):
                t0 = time.perf_counter()
                self.train_time_s += t0 - start - hooks_s  # what the hook saves includes the time so far
                start, hooks_s = t0, 0.0
                on_epoch(self)
                model.train()
                hooks_s += time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.train_time_s += time.perf_counter() - start - hooks_s
        return TrainOutcome(steps=self.step, epochs=self.step * self.batch_size / self.n,
                            final_loss=float(loss.item()), train_time_s=self.train_time_s)

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the model that decides the remaining steps (plain tensors and numbers)."""
        state = {"step": self.step, "pos": self.pos, "perm": self.perm.clone(), "generator": self.gen.get_state(),
                 "torch_rng": torch.get_rng_state(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "train_time_s": self.train_time_s}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` (torch's global generator included: dropout masks depend on it)."""
        self.step, self.pos = int(state["step"]), int(state["pos"])
        self.perm = state["perm"].clone()
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_time_s = float(state["train_time_s"])


def train_model(model: nn.Module, splits: Splits, cfg: TrainConfig, seed: int,
                device: torch.device) -> TrainOutcome:
    """Train `model` (already on `device`) on the training split for cfg.steps or cfg.epochs (the proxy)."""
    return Trainer(model, splits, cfg, seed, device).run()


# On a CPU a batch of 1,024 CIFAR images spills every activation out of the cache; small batches
# evaluate about twice as fast (bench/eval_batch.py). A GPU wants large batches.
CPU_EVAL_BATCH = 32
CUDA_EVAL_BATCH = 1024


def eval_batch_size(cfg: TrainConfig, device: torch.device) -> int:
    """`train.eval_batch_size`, or when null the device's default (1,024 on CUDA, 32 on the CPU)."""
    return cfg.eval_batch_size or (CUDA_EVAL_BATCH if device.type == "cuda" else CPU_EVAL_BATCH)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, splits: Splits, cfg: TrainConfig,
             device: torch.device) -> float:
    """Top-1 accuracy on (x, y) in eval mode; non-finite outputs raise Diverged."""
    model.eval()
    norm = Normalizer(splits.mean, splits.std, device, cfg.channels_last)
    amp = cfg.amp and device.type == "cuda"
    correct = torch.zeros((), dtype=torch.long, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    bs = eval_batch_size(cfg, device)
    for i in range(0, len(y), bs):
        xb = norm(x[i:i + bs].to(device, non_blocking=True))
        yb = y[i:i + bs].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xb)
        finite &= torch.isfinite(out).all()
        correct += (out.argmax(1) == yb).sum()
    if not bool(finite):
        raise Diverged("the trained network outputs NaN/inf on the validation split")
    return int(correct) / max(1, len(y))


__all__ = ["Diverged", "TrainOutcome", "physical_cores", "select_device", "configure_backend", "make_optimizer",
           "lr_factor", "augment", "step_count", "normalizer_coefficients", "Normalizer", "cutout", "WeightEMA",
           "Trainer", "train_model", "accuracy", "eval_batch_size"]

