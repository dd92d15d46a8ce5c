"""Convolution filters as pictures: first-layer RGB filters in a grid, and a deeper filter per input channel."""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from toolbox.render.colormap import apply_colormap
from toolbox.render.mosaic import mosaic_geometry, outline_tile, resize_tiles, tile_grid, to_levels
from toolbox.render.panes import blank_pane, fit_image
from toolbox.render.text import fit_text, put_text


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


def input_channel_grid(weight: torch.Tensor, selected: int, pane_h: int, pane_w: int,
                       mode: Literal["filter", "global"] = "filter") -> np.ndarray:
    """One filter of a deeper layer, (N, C, k, k) weights -> grid (H, W, 3) uint8 BGR with one grey
    k x k tile per input channel of filter ``selected`` (the classic VGG16 filter picture).

    mode "filter": min-max over this filter's weights; "global": over all filters of the layer,
    so tiles of different filters can be compared. Mid-grey is not zero; the range is the tile's.
    """
    w = weight.detach().float()
    unit = normalise_filters(w[selected : selected + 1], "filter")[0] if mode == "filter" else \
        normalise_filters(w, "global")[selected]
    c, kh, kw = unit.shape
    geometry = mosaic_geometry(c, kh, kw, pane_h, pane_w)
    tiles = to_levels(resize_tiles(unit[:, None], geometry.tile_h, geometry.tile_w))  # (C, 1, th, tw)
    return tile_grid(tiles.permute(0, 2, 3, 1).expand(-1, -1, -1, 3).contiguous(), geometry)


def pointwise_weights_grid(weight: torch.Tensor, selected: int, pane_h: int, pane_w: int,
                           colormap: str = "coolwarm") -> np.ndarray:
    """One filter of a 1x1 convolution, (N, C, 1, 1) weights -> grid (H, W, 3) uint8 BGR with one tile per
    input channel, coloured by the weight on a diverging table centred on zero (red: the input channel
    raises this filter's output, blue: lowers it, grey: ignored), scaled by the filter's largest |weight|.
    A 1x1 kernel is one number per input channel, so the grey k x k picture of deeper filters would show
    C flat squares whose grey level means nothing on its own."""
    w = weight.detach().float()[selected, :, 0, 0]
    scale = w.abs().max()
    unit = 0.5 + 0.5 * w / (scale if scale > 0 else 1.0)
    geometry = mosaic_geometry(w.shape[0], 1, 1, pane_h, pane_w)
    colours = apply_colormap(to_levels(unit), colormap)  # (C, 3)
    tiles = colours[:, None, None, :].expand(-1, geometry.tile_h, geometry.tile_w, 3)
    return tile_grid(tiles.contiguous(), geometry)


def layer_conv_weight(module: torch.nn.Module, layer: str) -> torch.Tensor | None:
    """(N, C, k, k) weights of the convolution that makes ``layer``'s channels: the layer itself if it is
    a Conv2d, else the last Conv2d inside it, else the last Conv2d registered before it; None if none."""
    target = module.get_submodule(layer)
    inside = [m for m in target.modules() if isinstance(m, torch.nn.Conv2d)]
    if inside:
        return inside[-1].weight
    before = None
    for name, m in module.named_modules():
        if name == layer:
            break
        if isinstance(m, torch.nn.Conv2d):
            before = m
    return None if before is None else before.weight


def filters_view(weight: torch.Tensor, selected: int, pane_h: int, pane_w: int,
                 mode: Literal["filter", "global"] = "filter") -> np.ndarray:
    """What the mosaic shows in filter mode: all RGB filters for a first layer (3 input channels) with
    the selected one outlined (the cursor); for 1x1 convolutions the selected filter's input-channel
    weights in diverging colour; else the selected filter's input-channel kernels. -> (H, W, 3) uint8 BGR."""
    selected = min(max(selected, 0), weight.shape[0] - 1)
    if weight.shape[1] == 3:
        grid = filter_grid(weight, pane_h, pane_w, mode)
        n, _, kh, kw = weight.shape
        return outline_tile(grid, mosaic_geometry(n, kh, kw, pane_h, pane_w), selected)
    if weight.shape[-2:] == (1, 1):
        return pointwise_weights_grid(weight, selected, pane_h, pane_w)
    return input_channel_grid(weight, selected, pane_h, pane_w, mode)


def filters_pane(weight: torch.Tensor | None, selected: int, layer: str, height: int, width: int) -> np.ndarray:
    """(height, width, 3) uint8 BGR: ``filters_view`` of ``layer``'s convolution centred in the pane with
    pixel-exact tiles; a picture of one filter (deeper layers) says which filter it is and how to read
    it along the bottom edge. ``weight`` None (no convolution before the layer): a pane saying so."""
    if weight is None:
        pane = blank_pane(height, width)
        put_text(pane, fit_text(f"no convolution before {layer}", width - 20, 0.6), (10, 30), 0.6)
        return pane
    pane = fit_image(filters_view(weight, selected, height, width), height, width, enlarge=False)
    if weight.shape[1] != 3:
        kind = "1x1: weight per input channel, red +, blue -" if weight.shape[-2:] == (1, 1) else \
            f"{weight.shape[-2]}x{weight.shape[-1]} kernel per input channel"
        caption = f"filter {min(selected, weight.shape[0] - 1)} of {layer} ({kind})"
        put_text(pane, fit_text(caption, width - 12, 0.45), (6, height - 8), 0.45)
    return pane
