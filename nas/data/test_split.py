"""The test split: opened by stage 2 alone (`python -m nas.train`), once, after training.

Where each source keeps it:

- ``cifar10``: ``x_test``/``y_test`` of the ``.npz``, ``test_batch`` of the batches folder
  (never downloaded separately: the standard archive holds both);
- ``imagefolder``: a ``test/`` folder (else ``val/``) beside ``train/``, with the same class
  folders; a root without ``train/`` has no test split;
- ``digits``: scikit-learn ships no test split, so a fixed stratified fifth of the 1,797 images
  (`DIGITS_TEST_FRACTION`, `DIGITS_TEST_SEED`) is the test part, and stage 2 draws its train and
  validation splits from the rest (`load_splits(..., hold_out_test=True)`). A search on digits
  uses all 1,797 images, so on digits the test figure is clean for the trained weights but not
  for the choice of architecture.

The search, the grid and the proxy never call anything here (a test checks it); the one other reader
is `bench/supernet_study.py --test-images`, which measures how well estimators rank fixed random
candidates and selects nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from .source import resize
from .split import DataError

DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 1234567


def digits_test_indices(labels: np.ndarray) -> np.ndarray:
    """The sorted indices of the digits images that form the test part (fixed: a stratified fifth)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    _, test = train_test_split(idx, test_size=DIGITS_TEST_FRACTION, stratify=labels, random_state=DIGITS_TEST_SEED)
    return np.sort(test)


def non_test_indices(data: DataConfig, labels: np.ndarray) -> np.ndarray | None:
    """Indices of the training source left once its test part is removed; None when the test split is apart."""
    if data.source != "digits":
        return None
    return np.setdiff1d(np.arange(len(labels)), digits_test_indices(labels))


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _cifar_test(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from .cifar import find_batches, read_batch, read_npz_split

    if path.suffix == ".npz":
        return read_npz_split(path, "test", "no test split; set stage2.test: false to train without one")
    folder = find_batches(path)
    if folder is None or not (folder / "test_batch").is_file():
        raise DataError(f"{path}: no CIFAR-10 test_batch; set stage2.test: false to train without a test split")
    return read_batch(folder / "test_batch")


def _folder_test(path: Path, resolution: int, interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    from .imagefolder import folder_source

    root = path
    if not (root / "train").is_dir():
        raise DataError(f"{root}: no test split (a root with train/ and test/ or val/ folders has one); set "
                        f"stage2.test: false to train without one")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if test_dir is None:
        raise DataError(f"{root}: no test/ or val/ folder beside train/; set stage2.test: false to train without "
                        f"a test split")
    train, test = folder_source(root), folder_source(test_dir)
    if test.class_names != train.class_names:
        extra = sorted(set(test.class_names) ^ set(train.class_names))
        raise DataError(f"{test_dir}: its class folders differ from train/'s ({', '.join(extra[:5]) or 'order'})")
    return test.images(np.arange(len(test.labels)), resolution, interpolation), test.labels


def load_test(data: DataConfig, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 NCHW images, int64 labels) of the source's test split at `resolution`."""
    if data.source == "digits":
        from .digits import digits_source

        src = digits_source()
        idx = digits_test_indices(src.labels)
        return _nchw(src.images(idx, resolution, data.interpolation)), torch.from_numpy(src.labels[idx].copy())
    if data.path is None:
        raise DataError(f"data source {data.source!r} needs data.path to find its test split")
    path = Path(data.path)
    if data.source == "cifar10":
        x, y = _cifar_test(path)
        x = resize(x, resolution, data.interpolation)
    elif data.source == "imagefolder":
        x, y = _folder_test(path, resolution, data.interpolation)
    else:
        raise DataError(f"unknown data source {data.source!r}")
    return _nchw(x), torch.from_numpy(np.asarray(y, dtype=np.int64).copy())


__all__ = ["load_test", "digits_test_indices", "non_test_indices", "DIGITS_TEST_FRACTION", "DIGITS_TEST_SEED"]
