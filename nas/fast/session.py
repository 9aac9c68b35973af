"""The fast evaluator: candidates trained from device-resident data, as CUDA graphs, several at a time.

`FastSession(splits, cfg, device).evaluate_many(genotypes, seeds)` returns one `EvalResult` per
candidate, in order, with the standard evaluator's statuses (a diverged, out-of-memory or failing
candidate gets accuracy 0 and a reason; nothing is raised). Accuracy is measured on
``splits.x_val``/``y_val``. On CPU the same code runs eagerly (one candidate after another, or
interleaved in chunks when ``concurrent`` > 1), which is how the tests check it.
"""
from __future__ import annotations

import gc
import logging
import time
from collections.abc import Sequence

import torch

from search_space import Genotype, parse
from search_space.model import build_model

from ..config import TrainConfig
from ..data import Splits
from ..results import Diverged, EvalResult, failure
from ..train import accuracy
from .augment import to_device_images
from .plan import make_plan
from .runner import CandidateRun, CaptureFailed
from .scheduler import run_jobs

log = logging.getLogger(__name__)


class FastSession:
    """Training data resident on one device plus what the session learned (whether graphs work)."""

    def __init__(self, splits: Splits, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.splits = Splits(x_train=splits.x_train, y_train=splits.y_train, x_val=splits.x_val.to(device),
                             y_val=splits.y_val.to(device), mean=splits.mean, std=splits.std,
                             num_classes=splits.num_classes, resolution=splits.resolution)
        self.images = to_device_images(splits.x_train, splits.y_train, splits.mean, splits.std, cfg.crop_pad, device)
        self.graphs = bool(cfg.cuda_graphs) and device.type == "cuda"
        self.stats: dict[str, object] = {"captured": 0, "eager": 0, "capture_failures": []}

    def evaluate(self, genotype: Genotype | str, seed: int) -> EvalResult:
        """Train and score one candidate."""
        return self.evaluate_many([genotype], [seed], concurrent=1)[0]

    def evaluate_many(self, genotypes: Sequence[Genotype | str], seeds: Sequence[int],
                      concurrent: int | None = None) -> list[EvalResult]:
        """Train and score candidates, `concurrent` (default cfg.concurrent) at a time on the device."""
        if len(genotypes) != len(seeds):
            raise ValueError(f"{len(genotypes)} genotypes but {len(seeds)} seeds")
        cfg, dev = self.cfg, self.device
        gs = [parse(g) if isinstance(g, str) else g for g in genotypes]
        results: list[EvalResult | None] = [None] * len(gs)

        def start(i: int) -> CandidateRun:
            torch.manual_seed(seeds[i])  # weights (built on the CPU: the same init on every device)
            model = build_model(gs[i], num_classes=self.splits.num_classes, in_channels=self.splits.in_channels,
                                dropout=cfg.dropout, drop_connect=cfg.drop_connect, bn_momentum=cfg.bn_momentum)
            model = model.to(dev, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
            run = CandidateRun(model, self.images, make_plan(len(self.splits.y_train), cfg, seeds[i]).to(dev), cfg, dev)
            run.warm_up()
            if self.graphs and run.remaining:
                try:
                    run.capture()
                    self.stats["captured"] = int(self.stats["captured"]) + 1  # type: ignore[call-overload]
                    return run
                except CaptureFailed as e:
                    # Eager from now on: a step that cannot be captured once will not be next time.
                    self.graphs = False
                    self.stats["capture_failures"].append(str(e))  # type: ignore[union-attr]
                    log.warning("CUDA graph capture failed, training eagerly from now on: %s", e)
            self.stats["eager"] = int(self.stats["eager"]) + 1  # type: ignore[call-overload]
            return run

        def finish(i: int, run: CandidateRun, train_time: float) -> None:
            if bool(run.bad):
                raise Diverged(f"loss became {float(run.loss)} within {run.plan.steps} steps (lr {cfg.lr})",
                               steps=run.plan.steps, epochs=run.plan.epochs)
            t0 = time.perf_counter()
            acc = accuracy(run.model, self.splits.x_val, self.splits.y_val, self.splits, cfg, dev)
            results[i] = EvalResult(accuracy=acc, train_time_s=train_time, steps=run.plan.steps,
                                    epochs=run.plan.epochs, final_loss=float(run.loss),
                                    eval_time_s=time.perf_counter() - t0, device=str(dev), seed=seeds[i])

        def fail(i: int, e: BaseException) -> None:
            results[i] = failure(e, str(dev), seeds[i])

        run_jobs(len(gs), start, finish, fail, concurrent or cfg.concurrent, dev)
        if dev.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
        return [r for r in results if r is not None]


__all__ = ["FastSession"]
