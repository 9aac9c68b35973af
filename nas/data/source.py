"""A training set as labels plus a way to fetch images by index at a resolution."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ArraySource:
    """Images already in memory: uint8 NHWC and int64 labels."""

    x: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str = "arrays"

    @property
    def channels(self) -> int:
        """Colour channels of the images."""
        return int(self.x.shape[-1])

    def images(self, idx: np.ndarray, resolution: int | None, interpolation: str = "bilinear") -> np.ndarray:
        """The images at `idx` as uint8 NHWC, resized to resolution x resolution (None: as stored)."""
        return resize(self.x[idx], resolution, interpolation)


def resize(x: np.ndarray, resolution: int | None, interpolation: str = "bilinear") -> np.ndarray:
    """Resize uint8 NHWC images to a square resolution (bilinear with antialiasing, or nearest)."""
    if resolution is None or (x.shape[1] == resolution and x.shape[2] == resolution) or len(x) == 0:
        return np.ascontiguousarray(x)
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
    if interpolation == "nearest":
        y = F.interpolate(t, size=(resolution, resolution), mode="nearest")
    else:
        # antialias only matters when shrinking; align_corners=False is PIL's convention.
        y = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=resolution < x.shape[1])
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
