"""One candidate's training as a self-contained step: eager, or captured once as a CUDA graph and replayed.

The step reads everything it needs from device tensors (the plan's tables indexed by a device step
counter, the resident images, the LR table), so it has static shapes and no host work: after a
couple of eager warm-up steps (cuDNN/cuBLAS handles, autograd state, kernels loaded) it is
captured and every further step is one `graph.replay()` — one launch instead of ~1,000, which is
what bounds small networks in an eager loop. On CPU (or when capture fails) the very same step
runs eagerly, so the CPU tests exercise this code path.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from .augment import BatchMaker, DeviceImages
from .plan import Plan
from .sgd import ForeachSGD

WARMUP_STEPS = 2  # eager steps before capture; the docs ask for a few so lazy initialisation happens outside


class CaptureFailed(RuntimeError):
    """The training step could not be captured as a CUDA graph (the run goes on eagerly)."""


class CandidateRun:
    """Model, optimiser, plan and device-side counters of one candidate in training."""

    def __init__(self, model: nn.Module, images: DeviceImages, plan: Plan, cfg: TrainConfig,
                 device: torch.device) -> None:
        self.model = model
        self.plan = plan
        self.cfg = cfg
        self.device = device
        self.batch = BatchMaker(images, cfg.channels_last)
        self.opt = ForeachSGD(model, cfg.momentum, cfg.weight_decay, nesterov=True)
        self.amp = cfg.amp and device.type == "cuda"
        self.step_t = torch.zeros((), dtype=torch.int64, device=device)
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.loss = torch.zeros((), dtype=torch.float32, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.done = 0  # steps issued (executed eagerly or enqueued as replays)

    @property
    def remaining(self) -> int:
        """Steps not yet issued."""
        return self.plan.steps - self.done

    def _step(self) -> None:
        # Everything indexed on the device: no .item(), no host tensors, so the step is capturable.
        sel = self.step_t.view(1)
        p = self.plan
        idx = p.index.index_select(0, sel).view(-1)
        flip = p.flip.index_select(0, sel).view(-1)
        off = p.offset.index_select(0, sel).view(-1, 2)
        lr = p.lr.index_select(0, sel).view(())
        x, y = self.batch(idx, flip, off)
        self.model.train()
        self.opt.zero_grad()
        # Autocast's weight-cast cache must be off inside a graph (cached casts would be stale on replay).
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp, cache_enabled=False):
            out = self.model(x)
        loss = F.cross_entropy(out.float(), y, label_smoothing=self.cfg.label_smoothing)
        loss.backward()
        self.opt.step(lr)
        with torch.no_grad():
            self.bad.logical_or_(~torch.isfinite(loss))
            self.loss.copy_(loss)
            self.step_t.add_(1)

    def warm_up(self, steps: int = WARMUP_STEPS) -> None:
        """Run the first steps eagerly (also what lets capture see initialised handles and state)."""
        self.run_eager(min(steps, self.remaining))

    def run_eager(self, n: int) -> None:
        """Issue up to `n` steps eagerly."""
        for _ in range(min(n, self.remaining)):
            self._step()
            self.done += 1

    def capture(self) -> None:
        """Capture one step as a CUDA graph on the current (non-default) stream; raises CaptureFailed."""
        if self.device.type != "cuda":
            raise CaptureFailed("CUDA graphs need a CUDA device")
        g = torch.cuda.CUDAGraph()
        self.opt.zero_grad()  # backward inside the capture allocates the grads in the graph's pool
        try:
            # Not torch.cuda.graph(): it synchronises the whole device and empties the cache first,
            # which would stall the candidates training on the other streams.
            g.capture_begin()
            try:
                self._step()  # recorded, not executed: the step counter does not move
            finally:
                g.capture_end()
        except Exception as e:  # noqa: BLE001 - any capture problem means: go on eagerly
            self.opt.zero_grad()
            raise CaptureFailed(f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
        self.graph = g

    def run(self, n: int) -> None:
        """Issue up to `n` more steps: graph replays when captured, else eager steps."""
        if self.graph is None:
            self.run_eager(n)
            return
        for _ in range(min(n, self.remaining)):
            self.graph.replay()
            self.done += 1

    def release(self) -> None:
        """Free the graph and its memory pool."""
        if self.graph is not None:
            self.graph.reset()
            self.graph = None


__all__ = ["CandidateRun", "CaptureFailed", "WARMUP_STEPS"]
