"""Data sources for proxy training: training images split into train and held-out validation.

`load_splits(config.data, resolution)` is the one entry point: it opens the source named by
``data.source`` (``digits``, ``cifar10``, ``imagefolder``), draws the optional stratified subset
and the stratified hold-out split (fixed by ``data.split_seed``), resizes to the resolution and
measures the per-channel normalisation on the training part. Test splits are read only by
`nas.data.test_split.load_test`, which stage 2 (`python -m nas.train`) alone calls.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import torch

from ..config import DataConfig
from .cifar import cifar10_source
from .digits import digits_source
from .imagefolder import folder_source
from .source import ArraySource, resize
from .split import DataError, split_indices


class Source(Protocol):
    """What a data source offers: labels up front, images by index."""

    labels: np.ndarray

    @property
    def num_classes(self) -> int: ...

    @property
    def channels(self) -> int: ...

    def images(self, idx: np.ndarray, resolution: int | None, interpolation: str = "bilinear") -> np.ndarray: ...


@dataclass(frozen=True)
class Splits:
    """Train and validation images (uint8 NCHW tensors) with labels and normalisation."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    resolution: int

    @property
    def in_channels(self) -> int:
        """Colour channels."""
        return int(self.x_train.shape[1])


@lru_cache(maxsize=4)
def _open(source: str, path: str | None, download: bool, url: str, checksum: str | None) -> Source:
    if source == "digits":
        return digits_source()
    if source == "cifar10":
        return cifar10_source(path or "data_cache/cifar10", download_ok=download, url=url, checksum=checksum)
    if source == "imagefolder":
        if path is None:
            raise DataError("data source 'imagefolder' needs data.path")
        return folder_source(path)
    raise DataError(f"unknown data source {source!r}")


def open_source(data: DataConfig) -> Source:
    """The configured source (opened once per process)."""
    return _open(data.source, data.path, data.download, data.url, data.checksum)


def data_info(data: DataConfig) -> tuple[int, int]:
    """(in_channels, num_classes) of the configured source, without decoding images."""
    src = open_source(data)
    return src.channels, src.num_classes


def load_splits(data: DataConfig, resolution: int | None, hold_out_test: bool = False) -> Splits:
    """Train/val splits at ``data.resolution`` (or `resolution` when that is null).

    `hold_out_test` (stage 2) first removes the test part of a source that keeps it among its
    training images (digits; see `nas.data.test_split`).
    """
    src = open_source(data)
    res = data.resolution or resolution
    keep = None
    if hold_out_test:
        from .test_split import non_test_indices

        keep = non_test_indices(data, src.labels)
    if keep is None:
        train_idx, val_idx = split_indices(src.labels, data.val_fraction, data.split_seed, data.subset)
    else:
        tr, va = split_indices(src.labels[keep], data.val_fraction, data.split_seed, data.subset)
        train_idx, val_idx = keep[tr], keep[va]
    x_tr = src.images(train_idx, res, data.interpolation)
    x_va = src.images(val_idx, res, data.interpolation)
    res = int(x_tr.shape[1])
    c = x_tr.shape[-1]
    if data.mean is not None or data.std is not None:
        mean = tuple(data.mean) if data.mean is not None else (0.0,) * c
        std = tuple(data.std) if data.std is not None else (1.0,) * c
        if len(mean) != c or len(std) != c:
            raise DataError(f"data.mean/std need {c} values (one per channel), got {len(mean)}/{len(std)}")
    elif data.normalize:
        px = x_tr.reshape(-1, c).astype(np.float64) / 255.0
        mean, std = tuple(px.mean(0).tolist()), tuple(np.maximum(px.std(0), 1e-3).tolist())
    else:
        mean, std = (0.0,) * c, (1.0,) * c

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    return Splits(x_train=nchw(x_tr), y_train=torch.from_numpy(src.labels[train_idx].copy()),
                  x_val=nchw(x_va), y_val=torch.from_numpy(src.labels[val_idx].copy()),
                  mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
                  num_classes=int(src.num_classes), resolution=res)


__all__ = ["Splits", "Source", "DataError", "ArraySource", "open_source", "data_info", "load_splits",
           "split_indices", "resize", "cifar10_source", "digits_source", "folder_source"]
