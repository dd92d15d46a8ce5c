"""Colour lookup tables: 256 grey levels -> BGR, as torch tensors so rendering can stay on device."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

COLORMAPS = {
    "none": None,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
}

# Tables OpenCV lacks, as RGB anchors at even steps, interpolated linearly. coolwarm: Moreland's
# diverging map ("Diverging Color Maps for Scientific Visualization", 2009): blue - light grey - red,
# equal lightness steps on both sides, for signed values around zero.
ANCHORED = {
    "coolwarm": ((59, 76, 192), (98, 130, 234), (141, 176, 254), (184, 208, 249), (221, 221, 221),
                 (245, 196, 173), (244, 154, 123), (222, 96, 77), (180, 4, 38)),
}


@functools.lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 BGR table; 'none' is the grey ramp."""
    if name in ANCHORED:
        anchors = np.asarray(ANCHORED[name], np.float64)[:, ::-1]  # RGB -> BGR
        steps = np.linspace(0, 1, len(anchors))
        ramp = np.linspace(0, 1, 256)
        return np.stack([np.interp(ramp, steps, anchors[:, c]) for c in range(3)], 1).round().astype(np.uint8)
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap '{name}' (choose {', '.join([*COLORMAPS, *ANCHORED])})")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    if COLORMAPS[name] is None:
        return np.repeat(ramp, 3, axis=1)
    return cv2.applyColorMap(ramp, COLORMAPS[name]).reshape(256, 3)


def apply_colormap(levels: torch.Tensor, name: str) -> torch.Tensor:
    """(...,) uint8 grey levels -> (..., 3) uint8 BGR, on the same device."""
    if name == "none":
        return levels.unsqueeze(-1).expand(*levels.shape, 3)
    lut = torch.from_numpy(colormap_lut(name)).to(levels.device)
    return lut[levels.long()]


def colormap_image(levels: np.ndarray, name: str) -> np.ndarray:
    """(H, W) uint8 grey levels -> (H, W, 3) uint8 BGR on the host (OpenCV's table lookup)."""
    if name == "none":
        return cv2.cvtColor(levels, cv2.COLOR_GRAY2BGR)
    return cv2.applyColorMap(levels, COLORMAPS[name]) if name in COLORMAPS else colormap_lut(name)[levels]
