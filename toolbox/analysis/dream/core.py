"""The DeepDream core: gradient ascent on the input image over an octave pyramid.

Image convention: the master image is (1, 3, H, W) float32 RGB in [0, 1] on the model's device;
it is normalised into the model's input space only inside the forward pass. ``dream`` takes and
returns (H, W, 3) uint8 BGR like the rest of deepvis.

One step (reference §2): random roll -> objective gradient (tiled or untiled, one path) -> unroll
-> one global normalisation (mean |g| or std) -> x += step * g -> clip to [0, 1].

Device decisions live in DreamEngine.__init__ only: on CUDA the forward runs under bf16 autocast
(activations cast back to fp32 for the objective; the image and update stay fp32), tiles are
batched by free memory, and an out-of-memory error halves the tile batch, then the tile size,
and retries the same step instead of failing.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from toolbox.errors import DeepvisError
from toolbox.models.registry import LoadedModel
from toolbox.analysis.dream.network import DreamNetwork
from toolbox.analysis.dream.objectives import LOGITS, LayerTerm, term_map
from toolbox.analysis.dream.octaves import detail_pyramid, detail_sizes, resize, resize_sizes
from toolbox.analysis.dream.presets import DreamSettings
from toolbox.analysis.dream.tiling import TileGrid, gather_tiles, roll, round_up, scatter_tiles, unroll

_OOM_ERRORS = tuple({getattr(torch, "OutOfMemoryError", RuntimeError), torch.cuda.OutOfMemoryError})
CPU_TILE_PIXELS = 4_000_000  # padded-tile pixels per batch on CPU (about 6 GB of saved activations)
GUIDE_SIDE = 224  # the google notebook downsizes guides toward the network's training size


@dataclass(frozen=True)
class DreamProgress:
    """Reported after every step: octave k of n (0-based), step i of steps, overall done/total."""

    octave: int
    octaves: int
    step: int
    steps: int
    done: int
    total: int
    objective: float | None = None  # only filled when the caller asks (it costs a device sync)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass
class DreamResult:
    """image: (H, W, 3) uint8 BGR. rgb: (1, 3, H, W) float32 RGB in [0, 1] (the master image)."""

    image: np.ndarray
    rgb: torch.Tensor
    steps_done: int
    cancelled: bool
    seconds: float
    objectives: list[float] = field(default_factory=list)  # per step, before the update
    fallbacks: list[str] = field(default_factory=list)  # OOM recoveries, in order


def _cancel_check(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


def bgr_to_rgb01(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32 RGB in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).to(device)
    return t.permute(2, 0, 1)[None].float().div_(255.0)


def rgb01_to_bgr(rgb: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) RGB (clipped to [0, 1]) -> (H, W, 3) uint8 BGR."""
    arr = (rgb[0].clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr[:, :, ::-1])


class DreamEngine:
    """The network cut for ``settings.terms`` plus everything per-device; reusable across images.

    Not thread-safe: one engine per worker. ``close()`` removes any hooks from the model.
    """

    def __init__(self, model: LoadedModel, settings: DreamSettings, channels_last: bool | None = None,
                 cut: str = "auto", fold_bn: bool = True, fuse: bool = True):
        if not settings.terms:
            raise DeepvisError("no dream layer chosen: pass --layers (deepvis layers lists them)")
        self.model = model
        self.settings = settings
        self.device = model.device
        self.cuda = self.device.type == "cuda"
        # channels_last input: about 1.2x faster per lite0 gradient on CPU (scripts/bench_dream.py
        # "levers"), the usual choice for convolutions on CUDA too. The shared weights are untouched.
        self.channels_last = True if channels_last is None else channels_last
        self.terms: tuple[LayerTerm, ...] = settings.terms
        layers = list(dict.fromkeys(t.layer for t in self.terms))
        self.net = DreamNetwork(model, layers, method=cut, fold_bn=fold_bn, fuse=fuse)
        self.forward = self.net
        if settings.compile != "none":
            mode = "reduce-overhead" if settings.compile == "cudagraph" else None
            self.forward = torch.compile(self.net.module, dynamic=False, mode=mode)
        # model input = gain * rgb + shift, per channel (Preprocess.normalise as one affine map)
        zero, one = (model.preprocess.normalise(torch.full((1, 3, 1, 1), v, device=self.device))
                     for v in (0.0, 1.0))
        self._input_shift, self._input_gain = zero, one - zero
        self.strides, self.channels = self._probe_layers()
        self.max_stride = max(self.strides.values())
        self.tile = None if settings.tile is None else round_up(settings.tile, self.max_stride)
        self.halo = round_up(settings.halo, self.max_stride)
        self.tile_batch = settings.tile_batch
        self.fallbacks: list[str] = []
        self._bytes_per_pixel: float | None = None
        self._auto_batch: dict[tuple[int, int], int] = {}
        self._last_batch = 1
        self._grids: dict = {}
        self.guides = self._guide_features(settings.guide) if any(t.kind == "guide" for t in self.terms) else {}
        # The per-batch forward+backward; a test may wrap it to simulate running out of memory.
        self.batch_gradient = self._batch_gradient

    # ----- setup -----
    def _probe_layers(self):
        side = 8 * 32
        x = torch.zeros(1, 3, side, side, device=self.device)
        with torch.inference_mode():
            acts = self.net(self.model.preprocess.normalise(x))
        strides = {n: (side // a.shape[-1] if a.dim() == 4 else 1) for n, a in acts.items()}
        channels = {n: a.shape[1] for n, a in acts.items()}
        for term in self.terms:
            if term.kind in ("mean", "l2", "channel", "guide") and acts[term.layer].dim() != 4:
                raise DeepvisError(f"layer '{term.layer}' is not a feature map: pick a convolutional dream layer")
            if term.kind == "channel" and not 0 <= term.channel < channels[term.layer]:
                raise DeepvisError(f"channel {term.channel} out of range for '{term.layer}' (0..{channels[term.layer] - 1})")
        return strides, channels

    def _guide_features(self, guide_bgr: np.ndarray) -> dict[str, torch.Tensor]:
        h, w = guide_bgr.shape[:2]
        k = min(1.0, GUIDE_SIDE / max(h, w))
        rgb = resize(bgr_to_rgb01(guide_bgr, self.device), (max(1, round(h * k)), max(1, round(w * k))))
        with torch.inference_mode():
            acts = self.net(self.model.preprocess.normalise(rgb))
        return {n: a[0].flatten(1).float().clone() for n, a in acts.items() if a.dim() == 4}

    # ----- one gradient -----
    def _counts(self, height: int, width: int) -> dict[LayerTerm, float]:
        counts = {}
        for term in self.terms:
            if term.kind == "logit" or term.layer == LOGITS:  # not spatial: one value per tile
                counts[term] = 1.0
                continue
            s = self.strides[term.layer]
            positions = math.ceil(height / s) * math.ceil(width / s)
            counts[term] = float(positions * term.elements_per_position(self.channels[term.layer]))
        return counts

    def _batch_gradient(self, tiles: torch.Tensor, masks: dict[str, torch.Tensor] | None,
                        counts: dict[LayerTerm, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, S, S) RGB tiles -> (their gradient (N, 3, S, S) fp32, objective scalar)."""
        # The input normalisation is affine per channel, so it runs outside autograd and its
        # gradient is one multiply: d objective / d rgb = gain * d objective / d input.
        with torch.no_grad():
            inp = torch.addcmul(self._input_shift, tiles, self._input_gain)
            if self.channels_last:
                inp = inp.contiguous(memory_format=torch.channels_last)
        inp.requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            acts = self.forward(inp)
        loss = inp.new_zeros(())
        for term in self.terms:
            m = term_map(term, acts[term.layer].float(), self.guides.get(term.layer))
            if masks is not None and m.dim() == 4:
                m = m * masks[term.layer]
            loss = loss + (term.weight / counts[term]) * m.sum()
        (grad,) = torch.autograd.grad(loss, inp)
        return torch.mul(grad, self._input_gain, out=torch.empty_like(tiles)), loss.detach()

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
                                 self._counts(grid.height, grid.width))
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
            except _OOM_ERRORS:
                self._shrink(*rgb.shape[-2:])

    def _gradient(self, rgb: torch.Tensor):
        height, width = rgb.shape[-2:]
        counts = self._counts(height, width)
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
            pad = batch - (stop - start) if self.settings.compile != "none" else 0
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
                               "image, a shallower dream layer, or --device cpu")
        self.fallbacks.append(note)

    # ----- the ascent -----
    def step(self, rgb: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One ascent step on (1, 3, H, W) RGB [0, 1] fp32 -> (new image, objective before the step)."""
        s = self.settings
        shift = tuple(torch.randint(-s.jitter, s.jitter + 1, (2,), generator=generator).tolist()) if s.jitter else (0, 0)
        grad, objective = self.gradient(roll(rgb, shift))
        grad = unroll(grad, shift)
        # One pass each over the full-size image: the norm, the update, the clip (in place, new image).
        scale = torch.linalg.vector_norm(grad, 1) / grad.numel() if s.norm == "mean-abs" else grad.std()
        rgb = torch.addcmul(rgb, grad, s.step_size / (scale + 1e-8))
        if s.clip:
            rgb.clamp_(0.0, 1.0)
        return rgb, objective

    def octave_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        s = self.settings
        if s.family == "detail":
            return detail_sizes(height, width, s.octaves, s.scale)
        return resize_sizes(height, width, s.first_octave, s.first_octave + s.octaves - 1, s.scale)

    def run(self, rgb: torch.Tensor, progress=None, cancel=None, steps: int | None = None,
            generator: torch.Generator | None = None, record_objective: bool = False):
        """Dream a (1, 3, H, W) RGB [0, 1] image over the octaves.

        -> (image (1, 3, H, W) fp32, steps done, cancelled, objectives). ``cancel`` (an Event or
        a callable) is checked before every step; ``progress(DreamProgress)`` is called after it.
        """
        s = self.settings
        steps = s.steps if steps is None else steps
        if generator is None:
            generator = torch.Generator().manual_seed(s.seed)
        is_cancelled = _cancel_check(cancel)
        height, width = rgb.shape[-2:]
        sizes = self.octave_sizes(height, width)
        total = len(sizes) * steps
        bases = detail_pyramid(rgb, sizes) if s.family == "detail" else None
        x = rgb.float()
        detail = None
        done, objectives, cancelled = 0, [], False
        with torch.enable_grad():
            for k, size in enumerate(sizes):
                if bases is not None:
                    x = bases[k] if detail is None else bases[k] + resize(detail, size)
                else:
                    x = resize(x, size)
                for i in range(steps):
                    if is_cancelled():
                        cancelled = True
                        break
                    x, objective = self.step(x, generator)
                    objectives.append(objective)
                    done += 1
                    if progress is not None:
                        value = float(objective) if record_objective else None
                        progress(DreamProgress(k, len(sizes), i + 1, steps, done, total, value))
                if bases is not None:
                    detail = x - bases[k]
                if cancelled:
                    break
        out = resize(x, (height, width))
        return out, done, cancelled, [float(o) for o in objectives]

    def close(self) -> None:
        self.net.close()

    def __enter__(self) -> "DreamEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def dream(image: np.ndarray, model: LoadedModel, settings: DreamSettings, progress=None, cancel=None,
          engine: DreamEngine | None = None) -> DreamResult:
    """Dream one (H, W, 3) uint8 BGR image; -> DreamResult with the (H, W, 3) uint8 BGR dream.

    progress: called with DreamProgress after every step. cancel: threading.Event or a callable
    returning True; checked before every step, so a cancel takes effect within one step and the
    result (``cancelled=True``) holds the partial dream. Deterministic for a given settings.seed
    (on CPU bit for bit; on CUDA up to atomics in the tile scatter).
    Pass ``engine`` to reuse the cut network and device state across calls.
    """
    start = time.perf_counter()
    own = engine is None
    engine = engine or DreamEngine(model, settings)
    try:
        rgb = bgr_to_rgb01(image, model.device)
        out, done, cancelled, objectives = engine.run(rgb, progress, cancel)
        return DreamResult(rgb01_to_bgr(out), out, done, cancelled, time.perf_counter() - start, objectives,
                           list(engine.fallbacks))
    finally:
        if own:
            engine.close()
