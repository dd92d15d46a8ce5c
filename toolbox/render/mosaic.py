"""Activation mosaics: every channel of a layer (its activations, or the gradient reaching them) tiled
in one near-square grid."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from toolbox.render.colormap import colormap_image

Normalisation = Literal["channel", "layer"]
BACKGROUND = (40, 40, 40)  # BGR of unused cells; both are grey so one plane can carry them
SEPARATOR = (90, 90, 90)


@dataclass(frozen=True)
class MosaicGeometry:
    """Where each channel's tile sits. Tiles are tile_h x tile_w with ``sep``-pixel lines between
    and around them; channel c is at row c // cols, column c % cols."""

    channels: int
    rows: int
    cols: int
    tile_h: int
    tile_w: int
    sep: int = 1

    @property
    def height(self) -> int:
        return self.rows * self.tile_h + (self.rows + 1) * self.sep

    @property
    def width(self) -> int:
        return self.cols * self.tile_w + (self.cols + 1) * self.sep

    def tile_origin(self, channel: int) -> tuple[int, int]:
        """(y, x) of the tile's top-left pixel."""
        row, col = divmod(channel, self.cols)
        return self.sep + row * (self.tile_h + self.sep), self.sep + col * (self.tile_w + self.sep)

    def channel_at(self, y: int, x: int) -> int | None:
        row, col = y // (self.tile_h + self.sep), x // (self.tile_w + self.sep)
        channel = row * self.cols + col
        return channel if 0 <= row < self.rows and 0 <= col < self.cols and channel < self.channels else None

    def move(self, channel: int, d_row: int, d_col: int) -> int:
        """The channel reached from ``channel`` by moving on the grid, clamped to valid channels."""
        row, col = divmod(channel, self.cols)
        row = min(max(row + d_row, 0), self.rows - 1)
        col = min(max(col + d_col, 0), self.cols - 1)
        return min(row * self.cols + col, self.channels - 1)


def mosaic_geometry(channels: int, fmap_h: int, fmap_w: int, pane_h: int, pane_w: int, sep: int = 1) -> MosaicGeometry:
    """The grid that shows ``channels`` maps of fmap_h x fmap_w as large as a pane allows.

    Tiles are an integer multiple of the map size when they fit at 1x or more (so every
    activation is a crisp square of pixels); otherwise they shrink, keeping the map's aspect.
    """
    best = None
    for cols in range(1, channels + 1):
        rows = math.ceil(channels / cols)
        scale = min((pane_w - (cols + 1) * sep) / (cols * fmap_w), (pane_h - (rows + 1) * sep) / (rows * fmap_h))
        if best is None or scale > best[0] + 1e-9:
            best = (scale, rows, cols)
    scale, rows, cols = best
    if scale >= 1:
        tile_h, tile_w = fmap_h * int(scale), fmap_w * int(scale)
    else:
        tile_h, tile_w = max(1, int(fmap_h * scale)), max(1, int(fmap_w * scale))
    return MosaicGeometry(channels, rows, cols, tile_h, tile_w, sep)


def normalise_activations(act: torch.Tensor, mode: Normalisation = "channel") -> torch.Tensor:
    """(C, H, W) -> (C, H, W) float32 in [0, 1]: min-max per channel or over the whole layer.
    A constant channel (or layer) maps to 0."""
    act = act.float()
    if mode == "channel":
        lo = act.amin(dim=(1, 2), keepdim=True)
        hi = act.amax(dim=(1, 2), keepdim=True)
    elif mode == "layer":
        lo, hi = act.min(), act.max()
    else:
        raise ValueError(f"normalisation must be 'channel' or 'layer', not {mode!r}")
    span = hi - lo
    return torch.where(span > 0, (act - lo) / torch.where(span > 0, span, 1.0), torch.zeros_like(act))


def normalised_channel(act: torch.Tensor, channel: int, mode: Normalisation = "channel") -> torch.Tensor:
    """(C, H, W) -> (H, W) in [0, 1]: one channel, normalised exactly as its mosaic tile."""
    if mode == "channel":
        return normalise_activations(act[channel : channel + 1], "channel")[0]
    lo, hi = act.min().float(), act.max().float()
    span = hi - lo
    return (act[channel].float() - lo) / span if span > 0 else torch.zeros_like(act[channel], dtype=torch.float32)


def to_levels(unit: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8 grey levels (rounded)."""
    return (unit.clamp(0, 1) * 255.0).round().to(torch.uint8)


def resize_tiles(maps: torch.Tensor, tile_h: int, tile_w: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, tile_h, tile_w): pixel repetition when enlarging (any dtype),
    area mean when shrinking (float)."""
    h, w = maps.shape[-2:]
    if (h, w) == (tile_h, tile_w):
        return maps
    if tile_h >= h and tile_w >= w and tile_h % h == 0 and tile_w % w == 0:
        sy, sx = tile_h // h, tile_w // w  # one copy: broadcast each pixel to an sy x sx block
        blocks = maps[..., :, None, :, None].expand(*maps.shape[:-2], h, sy, w, sx)
        return blocks.reshape(*maps.shape[:-2], tile_h, tile_w)
    mode = "area" if tile_h <= h and tile_w <= w else "nearest"
    return F.interpolate(maps, size=(tile_h, tile_w), mode=mode)


def grid_levels(levels: torch.Tensor, geometry: MosaicGeometry, separator: int, background: int) -> torch.Tensor:
    """(N, th, tw) uint8 tiles -> (H, W) uint8 grid with ``separator`` lines and ``background`` in
    unused cells; stays on the tiles' device."""
    g = geometry
    cells = levels.new_full((g.rows * g.cols, g.tile_h, g.tile_w), background)
    cells[: levels.shape[0]] = levels
    cells = F.pad(cells, (g.sep, 0, g.sep, 0), value=separator)  # a line above and left of each tile
    grid = cells.view(g.rows, g.cols, g.tile_h + g.sep, g.tile_w + g.sep).permute(0, 2, 1, 3)
    grid = grid.reshape(g.rows * (g.tile_h + g.sep), g.cols * (g.tile_w + g.sep))
    return F.pad(grid, (0, g.sep, 0, g.sep), value=separator)  # and the closing lines


def tile_grid(tiles: torch.Tensor, geometry: MosaicGeometry) -> np.ndarray:
    """(N, th, tw, 3) uint8 BGR tiles -> the grid image (H, W, 3) uint8 with separators."""
    planes = [grid_levels(tiles[..., k], geometry, SEPARATOR[k], BACKGROUND[k]) for k in range(3)]
    return np.ascontiguousarray(torch.stack(planes, dim=-1).cpu().numpy())


@functools.lru_cache(maxsize=64)
def _frame_mask(geometry: MosaicGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(separator lines, unused cells) as (H, W) bool masks."""
    ones = torch.ones((geometry.channels, geometry.tile_h, geometry.tile_w), dtype=torch.uint8)
    plane = grid_levels(ones, geometry, 2, 3).numpy()
    return plane == 2, plane == 3


CURSOR = ((255, 255, 255), (0, 0, 0))  # BGR of the cursor's outer and inner ring


def outline_tile(image: np.ndarray, geometry: MosaicGeometry, channel: int, colours=CURSOR) -> np.ndarray:
    """Draw the cursor around ``channel``'s tile (in place): a white ring on the separator lines and,
    for tiles of 8 pixels or more, a black one just inside. Every colour of every colormap is far in
    lightness from one of the two, so the cursor shows on grey, viridis, inferno, jet or turbo alike
    (a single colour is lost on some table: green on viridis or turbo)."""
    outer, inner = (tuple(int(v) for v in c) for c in colours)
    y, x = geometry.tile_origin(channel)
    cv2.rectangle(image, (x - 1, y - 1), (x + geometry.tile_w, y + geometry.tile_h), outer, 1)
    if min(geometry.tile_h, geometry.tile_w) >= 8:
        cv2.rectangle(image, (x, y), (x + geometry.tile_w - 1, y + geometry.tile_h - 1), inner, 1)
    return image


def channel_mosaic(act: torch.Tensor, geometry: MosaicGeometry, normalisation: Normalisation = "channel",
                   colormap: str = "none", selected: int | None = None) -> np.ndarray:
    """(C, H, W) activations -> (H', W', 3) uint8 BGR mosaic.

    Normalising, resizing and tiling run on the activation's device as one grey-level plane;
    only that plane crosses to the host, where the colour table is applied.
    """
    return unit_mosaic(normalise_activations(act, normalisation), geometry, colormap, selected)


def back_diffs_mosaic(gradient: torch.Tensor, geometry: MosaicGeometry, normalisation: Normalisation = "channel",
                      colormap: str = "none", selected: int | None = None) -> np.ndarray:
    """(C, h, w) signed layer gradient -> (H', W', 3) uint8 BGR mosaic around mid-grey (zero), brighter
    where raising the activation raises the target, as the Deep Visualization Toolbox draws back diffs.
    Scaled by the largest |gradient| of each channel ("channel") or of the layer ("layer")."""
    g = gradient.float()
    scale = g.abs().amax(dim=(1, 2), keepdim=True) if normalisation == "channel" else g.abs().max()
    unit = 0.5 + 0.5 * g / torch.where(scale > 0, scale, torch.ones_like(scale))
    return unit_mosaic(unit, geometry, colormap, selected)


def unit_mosaic(unit: torch.Tensor, geometry: MosaicGeometry, colormap: str = "none",
                selected: int | None = None) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H', W', 3) uint8 BGR mosaic: each channel resized to a tile, through the
    colour table (separators and empty cells keep their greys), the ``selected`` tile outlined."""
    if geometry.tile_h >= unit.shape[1]:  # enlarging repeats pixels: quantise first, repeat bytes
        levels = resize_tiles(to_levels(unit)[None], geometry.tile_h, geometry.tile_w)[0]
    else:
        levels = to_levels(resize_tiles(unit[None], geometry.tile_h, geometry.tile_w)[0])
    grey = grid_levels(levels, geometry, SEPARATOR[0], BACKGROUND[0]).cpu().numpy()
    image = colormap_image(grey, colormap)
    if colormap != "none":  # the table also coloured the separators and empty cells: restore them
        separators, unused = _frame_mask(geometry)
        image[separators] = SEPARATOR
        image[unused] = BACKGROUND
    if selected is not None:
        outline_tile(image, geometry, selected)
    return image
