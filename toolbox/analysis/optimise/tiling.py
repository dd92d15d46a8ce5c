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

from toolbox.analysis.optimise.device import OOM_ERRORS
from toolbox.analysis.optimise.network import LOGITS
from toolbox.errors import DeepvisError


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


CPU_TILE_PIXELS = 4_000_000  # padded-tile pixels per batch on CPU (about 6 GB of saved activations)


class TiledGradient:
    """The gradient of an objective that is a sum over activation positions, tiled or untiled,
    with the out-of-memory policy. A gradient oracle for ``optimise.loop``.

    Subclasses provide ``counts(height, width)`` (what the objective divides each term by on the
    whole image, passed to every batch) and ``_batch_gradient(tiles, masks, counts)`` ->
    (gradient of the tiles, objective); ``masks`` maps layer -> (N, 1, h, w) interior mask, None
    when untiled. ``batch_gradient`` is the attribute actually called (a test may wrap it).

    On CUDA tiles are batched by free memory (measured once per tile shape); on CPU by a pixel
    budget. Out of memory: go tiled, then halve the tile batch, then the tile, and retry the step.
    """

    def __init__(self, device: torch.device, strides: dict[str, int], tile: int | None, halo: int,
                 tile_batch: int | None, fixed_batch_shape: bool = False):
        self.device = device
        self.cuda = device.type == "cuda"
        self.strides = strides
        self.max_stride = max(strides.values())
        self.tile = None if tile is None else round_up(tile, self.max_stride)
        self.halo = round_up(halo, self.max_stride)
        self.tile_batch = tile_batch
        self.fixed_batch_shape = fixed_batch_shape  # compiled / graphed steps want one batch shape
        self.fallbacks: list[str] = []
        self._bytes_per_pixel: float | None = None
        self._auto_batch: dict[tuple[int, int], int] = {}
        self._last_batch = 1
        self._grids: dict = {}
        self.batch_gradient = self._batch_gradient

    def counts(self, height: int, width: int):
        raise NotImplementedError

    def _batch_gradient(self, tiles: torch.Tensor, masks, counts) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _grid(self, height: int, width: int):
        key = (height, width, self.tile, self.halo)
        if key not in self._grids:
            grid = TileGrid(height, width, self.tile, self.halo)
            index = grid.flat_index(self.device)
            masks = {n: grid.interior_mask(s, self.device) for n, s in self.strides.items() if n != LOGITS}
            self._grids = {key: (grid, index, masks)}  # keep only the current octave's
        return self._grids[key]

    def _untiled(self, height: int, width: int) -> bool:
        if self.tile is None:
            return True
        return height <= self.tile and width <= self.tile

    def _batch_size(self, grid: TileGrid) -> int:
        """Tiles per forward+backward: the user's, else (CUDA) what half the free memory holds,
        measured once per tile shape so the batch shape stays fixed; (CPU) a pixel budget."""
        if self.tile_batch is not None:
            return min(self.tile_batch, grid.count)
        if not self.cuda:
            return max(1, min(grid.count, CPU_TILE_PIXELS // (grid.side * grid.side)))
        key = (grid.side, grid.count)
        if key not in self._auto_batch:
            free, _ = torch.cuda.mem_get_info(self.device)
            per_tile = self._cuda_bytes_per_pixel(grid) * grid.side * grid.side
            self._auto_batch[key] = max(1, min(grid.count, int(0.5 * free / per_tile)))
        return self._auto_batch[key]

    def _cuda_bytes_per_pixel(self, grid: TileGrid) -> float:
        """Measured once: peak memory of one tile's forward+backward, per padded pixel."""
        if self._bytes_per_pixel is None:
            index, masks = self._grid(grid.height, grid.width)[1:]
            image = torch.zeros(1, 3, grid.height, grid.width, device=self.device)
            torch.cuda.synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._batch_gradient(gather_tiles(image, index[:1]), {n: m[:1] for n, m in masks.items()},
                                 self.counts(grid.height, grid.width))
            peak = torch.cuda.max_memory_allocated(self.device) - base
            self._bytes_per_pixel = 1.25 * peak / (grid.side * grid.side)
        return self._bytes_per_pixel

    def gradient(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, 3, H, W) RGB [0, 1] -> (d objective / d rgb (1, 3, H, W) fp32, objective scalar).

        Tiled when ``tile`` is set and the image exceeds it; same objective either way.
        On out-of-memory: halve the tile batch, then the tile, and try again.
        """
        while True:
            try:
                return self._gradient(rgb)
            except OOM_ERRORS:
                self._shrink(*rgb.shape[-2:])

    def _gradient(self, rgb: torch.Tensor):
        height, width = rgb.shape[-2:]
        counts = self.counts(height, width)
        if self._untiled(height, width):
            return self.batch_gradient(rgb, None, counts)
        grid, index, masks = self._grid(height, width)
        batch = self._last_batch = self._batch_size(grid)
        grad = torch.zeros_like(rgb)
        objective = rgb.new_zeros(())
        tiles = gather_tiles(rgb, index)
        for start in range(0, grid.count, batch):
            stop = min(start + batch, grid.count)
            chunk, chunk_masks, chunk_index = tiles[start:stop], {n: m[start:stop] for n, m in masks.items()}, index[start:stop]
            pad = batch - (stop - start) if self.fixed_batch_shape else 0
            if pad:  # keep one batch shape for compiled / graphed steps; padded tiles own nothing
                chunk = torch.cat([chunk, chunk[:1].expand(pad, -1, -1, -1)])
                chunk_masks = {n: torch.cat([m, torch.zeros_like(m[:1]).expand(pad, -1, -1, -1)])
                               for n, m in chunk_masks.items()}
            tile_grads, obj = self.batch_gradient(chunk, chunk_masks, counts)
            scatter_tiles(grad, tile_grads[: stop - start], chunk_index)
            objective = objective + obj
        return grad, objective

    def _shrink(self, height: int, width: int) -> None:
        if self.cuda:
            torch.cuda.empty_cache()
        min_tile = max(64, 2 * self.max_stride)
        if self._untiled(height, width):
            self.tile = round_up(max(height, width) // 2, self.max_stride)
            note = f"untiled -> tile {self.tile}"
        elif (self.tile_batch or self._last_batch) > 1:
            self.tile_batch = max(1, (self.tile_batch or self._last_batch) // 2)
            note = f"tile batch -> {self.tile_batch}"
        elif self.tile > min_tile:
            self.tile = max(min_tile, round_up(self.tile // 2, self.max_stride))
            self.tile_batch = None
            note = f"tile -> {self.tile}"
        else:
            raise DeepvisError(f"out of GPU memory even for one {self.tile + 2 * self.halo}px tile: use a smaller "
                               "image, a shallower layer, or --device cpu")
        self.fallbacks.append(note)
