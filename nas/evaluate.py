"""Evaluating a candidate: build it, train it for the budget, measure held-out accuracy.

`Evaluator(data, train)` takes the two config sections it reads (a search's, the grid's or a
stage-2 run's). It is cheap to pickle: the loaded data is
dropped and reloaded lazily, so an executor can re-create it in a worker process. A candidate
that diverges, runs out of memory or fails otherwise gets accuracy 0 and a status and reason;
nothing is raised, so the search goes on. On a GPU (``train.evaluator`` auto or fast) candidates go
to the fast evaluator in `nas.fast` (CUDA-graph steps, `evaluate_many` trains several at once).
"""
from __future__ import annotations

import gc
import time
from typing import Any

import torch

from search_space import Genotype, parse
from search_space.model import build_model

from .config import DataConfig, TrainConfig
from .data import Splits, load_splits
from .results import STATUSES, EvalResult, failure
from .train import accuracy, configure_backend, select_device, train_model


class Evaluator:
    """Trains candidates on the configured data; `evaluate(genotype, seed)` never raises for a bad candidate."""

    def __init__(self, data: DataConfig, train: TrainConfig, supernet: Any = None) -> None:
        self.data_cfg = data
        self.train_cfg = train
        self.supernet_cfg = supernet  # SupernetConfig, read when train.evaluator is 'supernet'
        self.supernet_sha256: str | None = None  # the checkpoint's hash the run recorded (checked on load)
        self._splits: dict[int | None, Splits] = {}
        self._fast: dict[int | None, Any] = {}  # nas.fast.FastSession per resolution (None: data not on the GPU)
        self._scorer: Any = None  # nas.supernet.evaluator.SupernetScorer (loads the checkpoint lazily)

    # Pickling keeps only the config: data and device state are rebuilt in the new process.
    def __getstate__(self) -> dict[str, Any]:
        return {"data_cfg": self.data_cfg, "train_cfg": self.train_cfg, "supernet_cfg": self.supernet_cfg,
                "supernet_sha256": self.supernet_sha256}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"supernet_cfg": None, "supernet_sha256": None, **state})
        self._splits = {}
        self._fast = {}
        self._scorer = None

    @property
    def device(self) -> torch.device:
        """The training device (train.device, 'auto' resolved)."""
        return select_device(self.train_cfg.device)

    def prepare(self, resolution: int | None) -> Splits:
        """Load the splits for a resolution (once) and place them on the device when they fit."""
        key = self.data_cfg.resolution or resolution
        if key not in self._splits:
            s = load_splits(self.data_cfg, resolution)
            dev = self.device
            if dev.type == "cuda" and self._fits(s, dev):
                s = Splits(x_train=s.x_train.to(dev), y_train=s.y_train.to(dev), x_val=s.x_val.to(dev),
                           y_val=s.y_val.to(dev), mean=s.mean, std=s.std, num_classes=s.num_classes,
                           resolution=s.resolution)
            self._splits[key] = s
        return self._splits[key]

    @staticmethod
    def _fits(s: Splits, dev: torch.device) -> bool:
        # Keep at least half the free memory for the networks themselves.
        need = sum(t.numel() * t.element_size() for t in (s.x_train, s.y_train, s.x_val, s.y_val))
        free, _ = torch.cuda.mem_get_info(dev)
        return need < free // 2

    @property
    def kind(self) -> str:
        """The evaluator in use, 'fast', 'standard' or 'supernet' (train.evaluator, 'auto' resolved for the device)."""
        if self.train_cfg.evaluator == "supernet":
            return "supernet"
        from .fast import resolve_evaluator

        return resolve_evaluator(self.train_cfg, self.device)

    def _fast_session(self, resolution: int | None) -> Any:
        """The fast evaluator's session for a resolution, or None where the standard one must run."""
        key = self.data_cfg.resolution or resolution
        if key not in self._fast:
            from .fast import FastSession

            try:
                splits = self.prepare(resolution)
            except Exception:  # noqa: BLE001 - the standard path reports the error per candidate
                return None
            dev = self.device
            # Data that did not fit on the GPU stays with the standard evaluator's per-batch copies.
            on_device = dev.type != "cuda" or splits.x_train.device.type == "cuda"
            self._fast[key] = FastSession(splits, self.train_cfg, dev) if on_device else None
        return self._fast[key]

    def evaluate_many(self, genotypes: list[Genotype | str], seeds: list[int]) -> list[EvalResult]:
        """Train and score several candidates; the fast evaluator trains train.concurrent of them at once."""
        gs = [parse(g) if isinstance(g, str) else g for g in genotypes]
        if len(gs) != len(seeds):
            raise ValueError(f"{len(gs)} genotypes but {len(seeds)} seeds")
        cfg = self.train_cfg
        configure_backend(self.device, cfg.threads, cfg.cudnn_benchmark)
        out: list[EvalResult | None] = [None] * len(gs)
        groups: dict[int | None, list[int]] = {}
        for i, g in enumerate(gs):
            groups.setdefault(self.data_cfg.resolution or g.resolution, []).append(i)
        for idx in groups.values():
            session = self._fast_session(gs[idx[0]].resolution) if self.kind == "fast" else None
            if self.kind == "supernet":
                res = [self._evaluate_supernet(gs[i], seeds[i]) for i in idx]
            elif session is None:
                res = [self._evaluate_standard(gs[i], seeds[i]) for i in idx]
            else:
                res = session.evaluate_many([gs[i] for i in idx], [seeds[i] for i in idx])
            for i, r in zip(idx, res):
                out[i] = r
        return [r for r in out if r is not None]

    def evaluate(self, genotype: Genotype | str, seed: int) -> EvalResult:
        """Train the candidate with this seed and return its validation accuracy and training time."""
        if self.kind == "fast":
            return self.evaluate_many([genotype], [seed])[0]
        if self.kind == "supernet":
            return self._evaluate_supernet(genotype, seed)
        return self._evaluate_standard(genotype, seed)

    def supernet_scorer(self) -> Any:
        """The supernet evaluator (``train.evaluator: supernet``); reads the checkpoint on first use."""
        if self._scorer is None:
            from .supernet.evaluator import SupernetScorer

            self._scorer = SupernetScorer(self.supernet_cfg, self.train_cfg, self.supernet_sha256)
        return self._scorer

    def _evaluate_supernet(self, genotype: Genotype | str, seed: int) -> EvalResult:
        """Inherited weights: extract the member, recalibrate BatchNorm, score on the validation split."""
        g = parse(genotype) if isinstance(genotype, str) else genotype
        dev = self.device
        configure_backend(dev, self.train_cfg.threads, self.train_cfg.cudnn_benchmark)
        try:
            splits = self.prepare(g.resolution)
            return self.supernet_scorer().score(g, seed, splits, dev)
        except Exception as e:  # noqa: BLE001 - one bad candidate must not end the search
            return failure(e, str(dev), seed)

    def built(self, g: Genotype, seed: int, splits: Splits) -> torch.nn.Module:
        """The candidate as the standard evaluator trains it: initialised from `seed`, on the device."""
        cfg = self.train_cfg
        torch.manual_seed(seed)  # weights, dropout and drop-connect masks
        model = build_model(g, num_classes=splits.num_classes, in_channels=splits.in_channels, dropout=cfg.dropout,
                            drop_connect=cfg.drop_connect, bn_momentum=cfg.bn_momentum).to(self.device)
        return model.to(memory_format=torch.channels_last) if cfg.channels_last else model

    def _evaluate_standard(self, genotype: Genotype | str, seed: int) -> EvalResult:
        """The plain eager trainer (nas.train) on the configured device."""
        g = parse(genotype) if isinstance(genotype, str) else genotype
        cfg = self.train_cfg
        dev = self.device
        configure_backend(dev, cfg.threads, cfg.cudnn_benchmark)
        model = out = None
        try:
            splits = self.prepare(g.resolution)
            model = self.built(g, seed, splits)
            out = train_model(model, splits, cfg, seed, dev)
            t0 = time.perf_counter()
            acc = accuracy(model, splits.x_val, splits.y_val, splits, cfg, dev)
            return EvalResult(accuracy=acc, train_time_s=out.train_time_s, steps=out.steps, epochs=out.epochs,
                              final_loss=out.final_loss, eval_time_s=time.perf_counter() - t0,
                              device=str(dev), seed=seed)
        except Exception as e:  # noqa: BLE001 - one bad candidate must not end the search
            trained = (out.steps, out.epochs) if out is not None else (0, 0.0)  # NaN only on validation
            return failure(e, str(dev), seed, steps=trained[0], epochs=trained[1])
        finally:
            del model
            if dev.type == "cuda":
                gc.collect()
                torch.cuda.empty_cache()


__all__ = ["Evaluator", "EvalResult", "STATUSES"]
