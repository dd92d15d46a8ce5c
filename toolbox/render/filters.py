"""Convolution filters as pictures: first-layer RGB filters in a grid."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from toolbox.render.mosaic import mosaic_geometry, resize_tiles, tile_grid, to_levels


def normalise_filters(weight: torch.Tensor, mode: Literal["filter", "global"] = "filter") -> torch.Tensor:
    """(N, C, k, k) weights -> [0, 1], min-max per filter or over all filters. Constant -> 0.5."""
    w = weight.detach().float()
    dims = (1, 2, 3)
    lo = w.amin(dim=dims, keepdim=True) if mode == "filter" else w.min()
    hi = w.amax(dim=dims, keepdim=True) if mode == "filter" else w.max()
    span = hi - lo
    return torch.where(span > 0, (w - lo) / torch.where(span > 0, span, 1.0), torch.full_like(w, 0.5))


def filter_grid(weight: torch.Tensor, pane_h: int, pane_w: int, mode: Literal["filter", "global"] = "filter",
                rgb_to_bgr: bool = True) -> np.ndarray:
    """First-layer filters (N, 3, k, k) -> grid image (H, W, 3) uint8 BGR, each filter one tile in colour.

    Inputs with other than 3 channels are shown as the mean over input channels, in grey.
    """
    unit = normalise_filters(weight, mode)
    n, c, kh, kw = unit.shape
    if c != 3:
        unit = unit.mean(dim=1, keepdim=True).expand(n, 3, kh, kw)
    elif rgb_to_bgr:
        unit = unit.flip(1)
    geometry = mosaic_geometry(n, kh, kw, pane_h, pane_w)
    tiles = to_levels(resize_tiles(unit, geometry.tile_h, geometry.tile_w)).permute(0, 2, 3, 1)
    return tile_grid(tiles.contiguous(), geometry)
