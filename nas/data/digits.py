"""The 8x8 handwritten digits scikit-learn ships (1,797 images, 10 classes): the built-in default."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .source import ArraySource


@lru_cache(maxsize=1)
def digits_source() -> ArraySource:
    """All of sklearn's digits as uint8 NHWC (1 channel); there is no test split to keep apart."""
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel values are 0..16; map them onto the usual 0..255 so normalisation is the same everywhere.
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return ArraySource(x=x, labels=d.target.astype(np.int64), num_classes=10, name="digits")
