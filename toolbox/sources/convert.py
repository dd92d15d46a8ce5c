"""Bring any decoded image to the one layout the toolbox uses: (H, W, 3) uint8 BGR."""
from __future__ import annotations

import numpy as np


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Grayscale, 16-bit, float and alpha images to (H, W, 3) uint8 BGR.

    16-bit is scaled by 1/257 (full range to full range); float is taken as [0, 1];
    alpha is composited over black.
    """
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype.kind == "f":
        image = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"its pixels are {image.dtype.itemsize * 8}-bit {image.dtype.name}, which deepvis does not read")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 2:  # gray + alpha
        gray = image[:, :, :1].astype(np.float32) * (image[:, :, 1:2].astype(np.float32) / 255.0)
        return np.repeat(gray.round().astype(np.uint8), 3, axis=2)
    if channels == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        return (image[:, :, :3].astype(np.float32) * alpha).round().astype(np.uint8)
    if channels == 3:
        return np.ascontiguousarray(image)
    raise ValueError(f"it has {channels} channels, which deepvis does not read")
