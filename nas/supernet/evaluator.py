"""Scoring a candidate with inherited weights: extract, recalibrate BatchNorm, measure accuracy.

`SupernetScorer` is what `nas.evaluate.Evaluator` delegates to for ``train.evaluator: supernet``.
It pickles as its paths and configs only; the checkpoint is read (and its sha256 checked against
the one the run recorded) the first time a worker scores a candidate. The score of a genotype
does not depend on its seed: every candidate is recalibrated on the same training images, so
differences between candidates are differences between architectures, not between draws.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_space.genotype import Genotype

from ..config import SupernetConfig, TrainConfig
from ..data import Splits
from ..data.split import random_indices
from ..results import EvalResult, failure
from ..train import Normalizer, accuracy
from .checkpoint import CheckpointError, load_supernet
from .net import SuperNet
from .sampling import largest


def calibration_indices(n: int, batches: int, batch_size: int, seed: int) -> torch.Tensor:
    """The training images BatchNorm statistics are measured on: a fixed random draw (same for all candidates)."""
    return random_indices(n, batches * batch_size, 1_000_003 + seed)


# The validation images a score limited to part of the split reads (training curves): the same random
# draw for every member and every call, so the curves compare like with like.
LIMIT_SEED = 2_000_003


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """Replace every BatchNorm's running statistics by their exact average over `batches`.

    Only the BatchNorm layers run in training mode (dropout and drop-connect stay off); the
    statistics are a cumulative average (momentum None), then the old momentum is restored.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        for xb in batches:
            model(xb)
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()


class SupernetScorer:
    """Scores genotypes with a trained supernet: `score(genotype, seed, splits, device)`."""

    def __init__(self, supernet: SupernetConfig, train: TrainConfig, sha256: str | None = None) -> None:
        if not supernet.checkpoint:
            raise CheckpointError("train.evaluator 'supernet' needs supernet.checkpoint")
        self.cfg = supernet
        self.train_cfg = train
        self.sha256 = sha256
        self._net: SuperNet | None = None
        self._calib: dict[tuple[str, int], list[torch.Tensor]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "train_cfg": self.train_cfg, "sha256": self.sha256}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._net = None
        self._calib = {}

    @property
    def net(self) -> SuperNet:
        """The supernet (loaded on first use, on the CPU; extraction copies a member out of it)."""
        if self._net is None:
            path = Path(self.cfg.checkpoint)
            if not path.is_file():
                raise CheckpointError(f"supernet checkpoint {str(path)!r} does not exist")
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if self.sha256 is not None and digest != self.sha256:
                raise CheckpointError(f"supernet checkpoint {path} changed: sha256 {digest[:12]}... but the run "
                                      f"started with {self.sha256[:12]}...")
            self.sha256 = digest
            self._net, _ = load_supernet(path, data)
            self._net.eval()
        return self._net

    def calibration_batches(self, splits: Splits, device: torch.device) -> list[torch.Tensor]:
        """The normalised recalibration batches on the device (built once)."""
        key = (str(device), int(splits.x_train.shape[0]))
        if key not in self._calib:
            bs = self.cfg.bn_batch_size or self.train_cfg.batch_size
            idx = calibration_indices(len(splits.y_train), self.cfg.bn_batches, bs, self.cfg.seed)
            norm = Normalizer(splits.mean, splits.std, device, self.train_cfg.channels_last)
            x = splits.x_train[idx.to(splits.x_train.device)]
            self._calib[key] = [norm(x[i:i + bs].to(device)) for i in range(0, len(idx), bs) if len(idx) - i >= 2]
        return self._calib[key]

    def scored_member(self, g: Genotype) -> Genotype:
        """The member whose accuracy stands for `g`: `g` itself, or `g` at the largest kernels (``score_kernel``)."""
        if self.cfg.score_kernel == "member":
            return g
        big = largest(self.net.space)
        return g.replace(stages=tuple(dataclasses.replace(st, kernel=b.kernel) for st, b in zip(g.stages, big.stages)))

    def model(self, g: Genotype, splits: Splits, device: torch.device) -> nn.Module:
        """The member with inherited weights and recalibrated BatchNorm, on the device, in eval mode."""
        model = self.net.extract(g).to(device)
        if self.train_cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        amp = self.train_cfg.amp and device.type == "cuda"
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            recalibrate_bn(model, self.calibration_batches(splits, device))
        return model

    def score(self, g: Genotype, seed: int, splits: Splits, device: torch.device,
              limit: int | None = None) -> EvalResult:
        """Accuracy of `g` on the validation split (a fixed random `limit` of its images if given); never raises."""
        try:
            if splits.num_classes != self.net.num_classes or splits.in_channels != self.net.in_channels:
                raise CheckpointError(f"the supernet has {self.net.num_classes} classes and {self.net.in_channels} "
                                      f"input channels, the data {splits.num_classes} and {splits.in_channels}")
            t0 = time.perf_counter()
            model = self.model(self.scored_member(g), splits, device)
            t1 = time.perf_counter()
            x, y = splits.x_val, splits.y_val
            if limit is not None and limit < len(y):
                idx = random_indices(len(y), limit, LIMIT_SEED).to(y.device)
                x, y = x[idx.to(x.device)], y[idx]
            acc = accuracy(model, x, y, splits, self.train_cfg, device)
            return EvalResult(accuracy=acc, train_time_s=t1 - t0, eval_time_s=time.perf_counter() - t1,
                              device=str(device), seed=seed)
        except Exception as e:  # noqa: BLE001 - one bad candidate must not end the search
            return failure(e, str(device), seed)


__all__ = ["SupernetScorer", "recalibrate_bn", "calibration_indices"]


def check_for_search(evaluator: Any, space: Any, splits: Splits, source: str = "config") -> str:
    """Before a search with ``train.evaluator: supernet``: the checkpoint must load, cover the space and fit the data.

    Returns the checkpoint's sha256 and gives it to the evaluator (workers check the file they load
    against it). Mistakes raise ConfigError naming ``supernet.checkpoint``.
    """
    from ..schema import ConfigError
    from .checkpoint import covers

    path = evaluator.supernet_cfg.checkpoint
    try:
        scorer = evaluator.supernet_scorer()
        net = scorer.net
    except CheckpointError as e:
        raise ConfigError(f"{source}: key 'supernet.checkpoint': {' '.join(str(e).split())}") from None
    why = covers(net.space.to_dict(), space.to_dict())
    if why:
        raise ConfigError(f"{source}: key 'supernet.checkpoint': {path} was trained on another space ({why}); "
                          f"train one for this space with python -m nas.supernet train")
    if (net.num_classes, net.in_channels) != (splits.num_classes, splits.in_channels):
        raise ConfigError(f"{source}: key 'supernet.checkpoint': {path} has {net.num_classes} classes and "
                          f"{net.in_channels} input channels, the data {splits.num_classes} and {splits.in_channels}")
    evaluator.supernet_sha256 = scorer.sha256
    return scorer.sha256


# Below this many validation images one candidate's accuracy carries a binomial error near a point, about
# the spread between random members of a space; two supernets ranked the same candidates alike on 2,000 images
# at tau +0.23-0.52 and on 10,000 at +0.51-0.85 (docs/supernet.md).
MIN_VALIDATION_IMAGES = 5000


def validation_note(images: int) -> str | None:
    """A one-line warning when the supernet would score on too few validation images to rank members."""
    if images >= MIN_VALIDATION_IMAGES:
        return None
    se = 100 * (0.25 / max(1, images)) ** 0.5
    return (f"the supernet scores candidates on {images} validation images: one accuracy carries a standard "
            f"error of up to {se:.1f} points, as much as random members differ; scoring costs only forward "
            f"passes, so give it {MIN_VALIDATION_IMAGES}+ (data.subset, data.val_fraction)")


RECORD = "supernet.json"


def record_checkpoint(checkpoint: str, run_dir: Path, resume: bool) -> str:
    """Write the checkpoint's sha256 into ``<run>/supernet.json``, or on resume check it is the same file."""
    import json

    from search_space.files import atomic_write_text

    from ..errors import UserError
    from .checkpoint import sha256_file

    digest = sha256_file(checkpoint)
    rec = Path(run_dir) / RECORD
    if resume and rec.is_file():
        old = json.loads(rec.read_text())
        if old.get("sha256") != digest:
            raise UserError(f"cannot resume {run_dir}: its candidates were scored with the supernet "
                            f"{old.get('checkpoint')} (sha256 {str(old.get('sha256'))[:12]}...), but "
                            f"supernet.checkpoint {checkpoint} is another file (sha256 {digest[:12]}...)")
        return digest
    atomic_write_text(rec, json.dumps({"checkpoint": str(checkpoint), "sha256": digest}, indent=1) + "\n")
    return digest


__all__ += ["check_for_search", "record_checkpoint", "validation_note", "MIN_VALIDATION_IMAGES"]
