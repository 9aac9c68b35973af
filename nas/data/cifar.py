"""CIFAR-10 training images from the standard ``cifar-10-batches-py`` folder or an ``.npz``.

Only the training part is ever read (``data_batch_1..5`` or ``x_train``/``y_train``); the test
split is left alone, so a search can never select on it. The python pickles are read with an
unpickler that accepts nothing but the standard format (dicts, lists, bytes, numpy arrays).
When the files are missing and downloading is on, the standard archive is fetched, its checksum
verified, and unpacked.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from .source import ArraySource
from .split import DataError

BATCHES = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
# The globals a numpy array pickle needs (numpy 1 and 2 spellings) and nothing else.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR batch files only: it refuses any other global."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch file")
        return super().find_class(module, name)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, int64 labels) of one python batch file."""
    with open(path, "rb") as f:
        d = _BatchUnpickler(f, encoding="bytes").load()
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"{path}: not a CIFAR-10 batch (expected a dict with b'data' and b'labels')")
    data = np.asarray(d[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' has shape {data.shape}, expected (N, 3072)")
    # Rows are CHW planes (1024 red, 1024 green, 1024 blue values).
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), np.asarray(d[b"labels"], dtype=np.int64)


def find_batches(path: Path) -> Path | None:
    """The batches folder at `path` or inside it, or None."""
    for cand in (path, path / BATCHES):
        if (cand / TRAIN_FILES[0]).is_file():
            return cand
    return None


def read_npz_split(path: Path, split: str, missing_hint: str) -> tuple[np.ndarray, np.ndarray]:
    """x_<split>/y_<split> of a CIFAR-style .npz (uint8 NHWC, int64 labels); the other split is never loaded."""
    keys = (f"x_{split}", f"y_{split}")
    try:
        with np.load(path, allow_pickle=False) as z:  # NpzFile reads members lazily
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; {missing_hint}")
            x, y = z[keys[0]], z[keys[1]]
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the .npz ({e})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(f"{path}: {keys[0]} must be uint8 NHWC, got {x.dtype} {x.shape}")
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if len(y) != len(x):
        raise DataError(f"{path}: {len(x)} {split} images but {len(y)} {split} labels")
    return x, y


def load_npz(path: Path) -> ArraySource:
    """x_train/y_train of a CIFAR-style .npz (uint8 NHWC); x_test is never loaded."""
    x, y = read_npz_split(path, "train", "expected x_train, y_train, x_test, y_test")
    return ArraySource(x=x, labels=y, num_classes=max(10, int(y.max()) + 1), name="cifar10")


def load_folder(folder: Path) -> ArraySource:
    """The five training batches of a ``cifar-10-batches-py`` folder."""
    missing = [f for f in TRAIN_FILES if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{folder}: missing {missing} of the CIFAR-10 training batches")
    parts = [read_batch(folder / f) for f in TRAIN_FILES]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return ArraySource(x=x, labels=y, num_classes=10, name="cifar10")


def verify_checksum(path: Path, checksum: str | None) -> None:
    """Raise DataError unless the file's digest matches ``md5:<hex>`` or ``sha256:<hex>`` (None: skip)."""
    if not checksum:
        return
    algo, _, want = checksum.partition(":")
    if algo not in ("md5", "sha256") or not want:
        raise DataError(f"checksum {checksum!r}: expected 'md5:<hex>' or 'sha256:<hex>'")
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != want.lower():
        raise DataError(f"{path.name}: {algo} {h.hexdigest()} does not match the expected {want}; "
                        f"the download is corrupt or not the CIFAR-10 archive")


def download(url: str, dest: Path, checksum: str | None) -> Path:
    """Fetch the archive at `url`, verify its checksum and unpack it into `dest`; returns the batches folder."""
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest, suffix=".tar.gz.part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
        verify_checksum(Path(tmp), checksum)
        with tarfile.open(tmp, "r:*") as tar:
            tar.extractall(dest, filter="data")  # the 'data' filter refuses absolute paths and links out
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    folder = find_batches(dest)
    if folder is None:
        raise DataError(f"{url}: the archive has no {BATCHES}/{TRAIN_FILES[0]}")
    return folder


def cifar10_source(path: str | Path, download_ok: bool = True, url: str | None = None,
                   checksum: str | None = None) -> ArraySource:
    """CIFAR-10 training images from a .npz, a batches folder (or its parent), downloading if allowed."""
    p = Path(path)
    if p.suffix == ".npz":
        if not p.is_file():
            raise DataError(f"CIFAR-10 .npz {str(p)!r} does not exist")
        return load_npz(p)
    folder = find_batches(p)
    if folder is None and download_ok and url:
        try:
            folder = download(url, p, checksum)
        except (OSError, tarfile.TarError) as e:
            raise DataError(f"CIFAR-10 not found in {p} and the download from {url} failed ({e}); put the "
                            f"'{BATCHES}' folder (data_batch_1..5) there, or point data.path at a .npz with "
                            f"x_train, y_train, x_test, y_test") from None
    if folder is None:
        raise DataError(f"CIFAR-10 not found in {p}: put the '{BATCHES}' folder (data_batch_1..5, from "
                        f"{url or 'the CIFAR-10 site'}) there, or point data.path at a .npz with x_train, "
                        f"y_train, x_test, y_test, or set data.download: true")
    return load_folder(folder)


__all__ = ["cifar10_source", "read_batch", "load_npz", "load_folder", "download", "verify_checksum", "BATCHES"]
