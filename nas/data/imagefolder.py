"""An ImageNet-style folder: one sub-folder of PNG/JPEG images per class, decoded with Pillow.

If the root has a ``train/`` folder (the ImageNet layout), only that is read: the ``val/`` folder
is the test split and is never touched. Labels come from the file list, so a subset and the
hold-out split are drawn before any image is decoded; images are resized (shorter side) and
centre-cropped to the resolution.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .split import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm")


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DataError("data source 'imagefolder' needs Pillow: pip install pillow") from None
    return Image


@dataclass(frozen=True)
class FolderSource:
    """A class-per-folder image set; images are decoded on demand."""

    files: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    name: str = "imagefolder"

    @property
    def num_classes(self) -> int:
        """Number of class folders."""
        return len(self.class_names)

    @property
    def channels(self) -> int:
        """Always RGB."""
        return 3

    def images(self, idx: np.ndarray, resolution: int | None, interpolation: str = "bilinear") -> np.ndarray:
        """Decode the images at `idx` to uint8 NHWC at resolution x resolution."""
        if resolution is None:
            raise DataError("data source 'imagefolder' needs a resolution (data.resolution or the space's)")
        image = _pil()
        resample = image.Resampling.NEAREST if interpolation == "nearest" else image.Resampling.BILINEAR

        bombs = (image.DecompressionBombError, image.DecompressionBombWarning)

        def load(i: int) -> np.ndarray:
            path = self.files[int(i)]
            try:
                with image.open(path) as im:
                    w, h = im.size
                    # Checked here too: the warning filter below is process state another thread may change.
                    limit = image.MAX_IMAGE_PIXELS
                    if limit is not None and w * h > limit:
                        raise image.DecompressionBombWarning(f"{w}x{h} = {w * h} pixels, over the limit {limit}")
                    return _square(im.convert("RGB"), resolution, resample)
            except bombs as e:
                raise DataError(f"{path}: refused as a possible decompression bomb ({' '.join(str(e).split())}); "
                                f"raise PIL.Image.MAX_IMAGE_PIXELS if the image is genuine") from None
            except OSError as e:
                raise DataError(f"{path}: cannot decode the image ({e})") from None

        out = np.empty((len(idx), resolution, resolution, 3), dtype=np.uint8)
        # Pillow only warns between 1x and 2x its pixel limit: an error here, never a stderr line.
        with warnings.catch_warnings():
            warnings.simplefilter("error", image.DecompressionBombWarning)
            with ThreadPoolExecutor(max_workers=4) as pool:  # Pillow decodes without the GIL
                for j, arr in enumerate(pool.map(load, idx)):
                    out[j] = arr
        return out


def _square(im, size: int, resample) -> np.ndarray:  # noqa: ANN001 - a PIL image
    """Resize the shorter side to `size`, then centre-crop a square."""
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), resample)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def folder_source(root: str | Path) -> FolderSource:
    """List the class folders (sorted names) and their image files."""
    root = Path(root)
    if (root / "train").is_dir():
        root = root / "train"
    if not root.is_dir():
        raise DataError(f"image folder {str(root)!r} does not exist")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: needs at least two class sub-folders, found {classes}")
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not found:
            raise DataError(f"{root / name}: no images ({', '.join(EXTENSIONS)})")
        files += found
        labels += [label] * len(found)
    return FolderSource(files=tuple(files), labels=np.asarray(labels, dtype=np.int64), class_names=tuple(classes))


__all__ = ["FolderSource", "folder_source", "EXTENSIONS"]
