"""Gradient tiling: cut an image into fixed-size tiles with a halo, and put tile gradients back.

The image is treated as a torus (the random roll already wraps it), so a tile's halo past an
image edge holds the pixels from the opposite edge. Each tile contributes the objective only over
its *interior* activations; its gradient over the whole padded tile (interior and halo) is
scatter-added back into the image. With a halo at least the receptive field of the deepest dream
layer, that sum is exactly the gradient of the whole-image objective (away from the torus seam,
where the untiled network zero-pads instead); with a smaller halo the error stays near tile edges.
Interior rows/columns past the image's end (the last tile overhangs) are masked out of the
objective so that no activation is counted twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def roll(image: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    """(..., H, W) -> the same, circularly shifted by (dy, dx)."""
    return torch.roll(image, shifts=shift, dims=(-2, -1))


def unroll(image: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
    return torch.roll(image, shifts=(-shift[0], -shift[1]), dims=(-2, -1))


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile`` x ``tile`` interior pixels and ``halo`` pixels on each side over an
    (height, width) image. ``tile`` and ``halo`` are multiples of the deepest layer's stride, so
    every tile's activation grid lines up with the whole image's."""

    height: int
    width: int
    tile: int
    halo: int

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.tile)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.tile)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def side(self) -> int:
        """Side of a padded tile, the shape the network sees."""
        return self.tile + 2 * self.halo

    def _axis_index(self, n_tiles: int, size: int, device) -> torch.Tensor:
        starts = torch.arange(n_tiles, device=device) * self.tile - self.halo
        return (starts[:, None] + torch.arange(self.side, device=device)[None, :]) % size  # (n, side)

    def flat_index(self, device=None) -> torch.Tensor:
        """(count, side, side) int64: index into the flattened (H*W) image of every tile pixel."""
        rows = self._axis_index(self.rows, self.height, device)
        cols = self._axis_index(self.cols, self.width, device)
        index = rows[:, None, :, None] * self.width + cols[None, :, None, :]  # (R, C, side, side)
        return index.reshape(self.count, self.side, self.side)

    def interior_mask(self, stride: int, device=None) -> torch.Tensor:
        """(count, 1, side/stride, side/stride) float: 1 on the activations this tile owns."""
        n = self.side // stride
        lo, hi = self.halo // stride, (self.halo + self.tile) // stride
        own_rows = math.ceil(self.height / stride)
        own_cols = math.ceil(self.width / stride)
        local = torch.arange(n, device=device)
        r_global = torch.arange(self.rows, device=device)[:, None] * (self.tile // stride) + local[None, :] - lo
        c_global = torch.arange(self.cols, device=device)[:, None] * (self.tile // stride) + local[None, :] - lo
        r_ok = (local >= lo) & (local < hi) & (r_global < own_rows)  # (R, n)
        c_ok = (local >= lo) & (local < hi) & (c_global < own_cols)  # (C, n)
        mask = r_ok[:, None, :, None] & c_ok[None, :, None, :]
        return mask.reshape(self.count, 1, n, n).float()


def gather_tiles(image: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) image, (N, S, S) flat index -> (N, 3, S, S) tiles."""
    flat = image.reshape(image.shape[1], -1)
    return flat[:, index].permute(1, 0, 2, 3)


def scatter_tiles(grad: torch.Tensor, tile_grads: torch.Tensor, index: torch.Tensor) -> None:
    """Add (N, 3, S, S) tile gradients into (1, 3, H, W) ``grad`` in place (halos overlap-add)."""
    flat = grad.view(grad.shape[1], -1)
    flat.index_add_(1, index.reshape(-1), tile_grads.permute(1, 0, 2, 3).reshape(grad.shape[1], -1))
