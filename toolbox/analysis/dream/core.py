"""DeepDream: the shared optimisation engine (analysis/optimise) with the dream objectives.

Image convention: the master image is (1, 3, H, W) float32 RGB in [0, 1] on the model's device;
it is normalised into the model's input space only inside the forward pass. ``dream`` takes and
returns (H, W, 3) uint8 BGR like the rest of deepvis.

One step (reference §2, optimise/loop.py): random roll -> objective gradient (tiled or untiled,
one path, optimise/tiling.py) -> unroll -> one global normalisation (mean |g| or std) ->
x += step * g -> clip to [0, 1] (optimise/steps.py NormalisedAscent).

Device decisions live in DreamEngine.__init__ only: on CUDA the forward runs under bf16 autocast
(activations cast back to fp32 for the objective; the image and update stay fp32), tiles are
batched by free memory, and an out-of-memory error halves the tile batch, then the tile size,
and retries the same step instead of failing.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from toolbox.errors import DeepvisError
from toolbox.models.registry import LoadedModel
from toolbox.analysis.dream.presets import DreamSettings
from toolbox.analysis.objectives.dream import LOGITS, LayerTerm, term_map
from toolbox.analysis.optimise.device import InputMap, autocast
from toolbox.analysis.optimise.loop import Optimiser, ascent_step
from toolbox.analysis.optimise.network import CutNetwork
from toolbox.analysis.optimise.octaves import detail_sizes, resize, resize_sizes
from toolbox.analysis.optimise.param import Pixels
from toolbox.analysis.optimise.progress import Progress as DreamProgress, seeded
from toolbox.analysis.optimise.steps import NormalisedAscent
from toolbox.analysis.optimise.tiling import TiledGradient

GUIDE_SIDE = 224  # the google notebook downsizes guides toward the network's training size


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


def bgr_to_rgb01(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32 RGB in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).to(device)
    return t.permute(2, 0, 1)[None].float().div_(255.0)


def rgb01_to_bgr(rgb: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) RGB (clipped to [0, 1]) -> (H, W, 3) uint8 BGR."""
    arr = (rgb[0].clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(arr[:, :, ::-1])


class DreamEngine(TiledGradient):
    """The network cut for ``settings.terms`` plus everything per-device; reusable across images.
    Its tiled ``gradient`` is the engine's gradient oracle; ``run`` the engine over the octaves.

    Not thread-safe: one engine per worker. ``close()`` removes any hooks from the model.
    """

    def __init__(self, model: LoadedModel, settings: DreamSettings, channels_last: bool | None = None,
                 cut: str = "auto", fold_bn: bool = True, fuse: bool = True):
        if not settings.terms:
            raise DeepvisError("no dream layer chosen: pass --layers (deepvis layers lists them)")
        self.model = model
        self.settings = settings
        # channels_last input: about 1.2x faster per lite0 gradient on CPU (scripts/bench_dream.py
        # "levers"), the usual choice for convolutions on CUDA too. The shared weights are untouched.
        self.input_map = InputMap(model, True if channels_last is None else channels_last)
        self.terms: tuple[LayerTerm, ...] = settings.terms
        layers = list(dict.fromkeys(t.layer for t in self.terms))
        self.net = CutNetwork(model, layers, method=cut, fold_bn=fold_bn, fuse=fuse)
        self.forward = self.net
        if settings.compile != "none":
            mode = "reduce-overhead" if settings.compile == "cudagraph" else None
            self.forward = torch.compile(self.net.module, dynamic=False, mode=mode)
        strides, self.channels = self._probe_layers(model)
        super().__init__(model.device, strides, settings.tile, settings.halo, settings.tile_batch,
                         fixed_batch_shape=settings.compile != "none")
        self.rule = NormalisedAscent(settings.step_size, settings.norm, (0.0, 1.0) if settings.clip else None)
        self.guides = self._guide_features(settings.guide) if any(t.kind == "guide" for t in self.terms) else {}

    # ----- setup -----
    def _probe_layers(self, model: LoadedModel):
        side = 8 * 32
        x = torch.zeros(1, 3, side, side, device=model.device)
        with torch.inference_mode():
            acts = self.net(model.preprocess.normalise(x))
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
    def counts(self, height: int, width: int) -> dict[LayerTerm, float]:
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
        inp = self.input_map.input(tiles)
        with autocast(self.device):
            acts = self.forward(inp)
        loss = inp.new_zeros(())
        for term in self.terms:
            m = term_map(term, acts[term.layer].float(), self.guides.get(term.layer))
            if masks is not None and m.dim() == 4:
                m = m * masks[term.layer]
            loss = loss + (term.weight / counts[term]) * m.sum()
        (grad,) = torch.autograd.grad(loss, inp)
        return self.input_map.rgb_gradient(grad), loss.detach()

    # ----- the ascent -----
    def step(self, rgb: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One ascent step on (1, 3, H, W) RGB [0, 1] fp32 -> (new image, objective before the step)."""
        pixels = Pixels(rgb.clone())
        objective = ascent_step(pixels, self.gradient, self.rule, generator, 0, self.settings.jitter)
        return pixels.rgb, objective

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
            generator = seeded(s.seed)
        # self.gradient is looked up per call: a test may replace it on the instance.
        optimiser = Optimiser(lambda x: self.gradient(x), self.rule, s.jitter)
        with torch.enable_grad():
            return optimiser.run_octaves(rgb, self.octave_sizes(*rgb.shape[-2:]), steps, generator, s.family,
                                         cancel, progress, record_objective)

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
