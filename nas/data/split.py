"""Stratified subset and hold-out split of a training set, fixed by a seed."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..errors import UserError


class DataError(UserError):
    """Data that cannot be found, read or split as configured."""


def split_indices(labels: np.ndarray, val_fraction: float, split_seed: int,
                  subset: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) index arrays: an optional stratified subset, then a stratified hold-out split."""
    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    try:
        if subset is not None and subset < len(idx):
            idx, _ = train_test_split(idx, train_size=subset, stratify=labels, random_state=split_seed)
        train, val = train_test_split(idx, test_size=val_fraction, stratify=labels[idx],
                                      random_state=split_seed)
    except ValueError as e:  # too few images of a class for a stratified split
        raise DataError(f"cannot split {len(idx)} images into train/val stratified by class "
                        f"(val_fraction {val_fraction}): {e}") from None
    # Sorted, so the split is a set: batch order comes from the training seed alone.
    return np.sort(train), np.sort(val)


def random_indices(n: int, k: int, seed: int) -> torch.Tensor:
    """`k` of the indices 0..n-1 (all of them if k >= n) in a fixed random order set by `seed`.

    Splits keep their images in index order and sources are often ordered by class (CIFAR-10's
    file, an image folder), so any part of a split smaller than the whole is drawn with this,
    never taken as a prefix: the first 1,000 of CIFAR-10's validation images are all airplanes.
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[: min(n, k)]


__all__ = ["DataError", "split_indices", "random_indices"]
