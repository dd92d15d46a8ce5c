"""Texture synthesis and style transfer (Gatys et al.) on the shared optimisation engine.

``Stylist(model, style_rgb, settings)`` computes the style image's Gram matrices once;
``texture(size)`` synthesises a texture from seeded noise, ``stylise(content)`` restyles a
content image (starting from the content, or from ``start``: the previous stylised frame warped
along the optical flow for video). The losses are objectives/style.py; the loop, pixels, Adam,
octaves, progress and cancel are analysis/optimise. Images: (1, 3, H, W) float32 RGB in [0, 1].
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from toolbox.analysis.dream.core import bgr_to_rgb01, rgb01_to_bgr
from toolbox.analysis.dream.temporal import FlowWarper, FrameRate, temporal_seed
from toolbox.analysis.inversion import noise_start
from toolbox.analysis.objectives.style import StyleObjective, gram
from toolbox.analysis.optimise.features import FeatureGradient
from toolbox.analysis.optimise.loop import Optimiser
from toolbox.analysis.optimise.network import LOGITS
from toolbox.analysis.optimise.octaves import resize, resize_sizes
from toolbox.analysis.optimise.progress import CancelSignal, seeded
from toolbox.analysis.optimise.steps import Adam
from toolbox.errors import DeepvisError
from toolbox.models.registry import LoadedModel

# The layer sets that gave the best textures, per model. lite0, compared on the shipped styles at
# 64 px, 200 steps (docs/style-layer-sets.jpg): the stem and first blocks alone (_relu0.._blocks.4)
# give colour speckle without the strokes' orientation or the glass cells; one block per stage up
# to stride 16 (below) brings both; swapping in a stride-32 block (_blocks.14) looks alike at these
# sizes and costs forward time; every other block up to _blocks.8 is close but grainier.
STYLE_LAYERS = {
    "lite0": ("_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10"),
    "vgg16": ("features.1", "features.6", "features.11", "features.18", "features.25"),
    "vgg19": ("features.1", "features.6", "features.11", "features.20", "features.29"),
}
CONTENT_LAYERS = {"lite0": "_blocks.7", "vgg16": "features.20", "vgg19": "features.22"}
STYLE_SIDE = 512  # the style image is used at most this large on its long side


def style_layers(model: LoadedModel) -> tuple[str, ...]:
    """The model's style layers: the tuned set, else five evenly spaced in its first two thirds."""
    if model.name in STYLE_LAYERS:
        return STYLE_LAYERS[model.name]
    names = model.layers[: max(1, (2 * len(model.layers)) // 3)]
    picks = sorted({round(i * (len(names) - 1) / 4) for i in range(5)})
    return tuple(names[i] for i in picks)


def content_layer(model: LoadedModel) -> str:
    if model.name in CONTENT_LAYERS:
        return CONTENT_LAYERS[model.name]
    return model.layers[len(model.layers) // 2]


def check_style_layers(model: LoadedModel, layers) -> tuple[str, ...]:
    """Every layer must be a feature map before the classifier (a Gram needs positions)."""
    for layer in layers:
        if layer == LOGITS:
            raise DeepvisError("--layers: 'logits' has no feature map for a Gram matrix: pick feature layers "
                               "(deepvis layers lists them)")
        model.check_layer(layer)
    return tuple(layers)


@dataclass(frozen=True)
class StyleSettings:
    steps: int = 150
    lr: float = 0.05  # Adam, in RGB [0, 1] units (measured: 0.02 and 0.1 match the Grams less well in 300 steps)
    style_weight: float = 1.0
    content_weight: float = 0.3
    tv_weight: float = 1.0
    layers: tuple[str, ...] | None = None  # None: style_layers(model)
    content_layer: str | None = None  # None: content_layer(model)
    octaves: int = 1  # texture: coarse-to-fine levels, each 1.5x the last
    seed: int = 0

    def replace(self, **changes) -> "StyleSettings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class StyleResult:
    rgb: torch.Tensor  # (1, 3, H, W) RGB [0, 1] on the CPU
    losses: list[float] = field(default_factory=list)
    steps_done: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    size: tuple[int, int] = (0, 0)  # (H, W) of the last level as optimised (smaller after running out of GPU memory)
    fallbacks: list[str] = field(default_factory=list)  # what the out-of-memory policy did, in order


class Stylist:
    """One style image's Gram targets and the cut network; reusable across frames. ``close()`` frees hooks."""

    def __init__(self, model: LoadedModel, style_rgb: torch.Tensor, settings: StyleSettings = StyleSettings()):
        self.model = model
        self.settings = settings
        self.layers = check_style_layers(model, settings.layers or style_layers(model))
        self.content = settings.content_layer or content_layer(model)
        check_style_layers(model, [self.content])
        self.oracle = FeatureGradient(model, [*self.layers, self.content])
        self.set_style(style_rgb)

    def set_style(self, style_rgb: torch.Tensor) -> None:
        h, w = style_rgb.shape[-2:]
        k = min(1.0, STYLE_SIDE / max(h, w))
        style = resize(style_rgb.float(), (max(1, round(h * k)), max(1, round(w * k))))
        acts = self.oracle.features(style)
        flat = [n for n in (*self.layers, self.content) if acts[n].dim() != 4]
        if flat:
            raise DeepvisError(f"layer '{flat[0]}' gives a vector, not a feature map (it comes after the classifier's "
                               "pooling): pick convolutional layers for --layers (deepvis layers)")
        self.style_targets = {n: gram(acts[n]) for n in self.layers}

    def objective(self, content_rgb: torch.Tensor | None) -> StyleObjective:
        s = self.settings
        target = None if content_rgb is None else self.oracle.features(content_rgb)[self.content]
        return StyleObjective(self.style_targets, self.content, target, s.style_weight, s.content_weight,
                              s.tv_weight if content_rgb is not None else 0.0)

    def _run(self, start: torch.Tensor, sizes, steps: int, generator, progress, cancel,
             content_rgb: torch.Tensor | None = None) -> StyleResult:
        """Out of GPU memory the engine continues at half the size: the Gram targets are means over
        positions (size-free), the content target is recomputed from the content at that size."""
        began = time.perf_counter()
        objective = self.oracle.objective

        def retarget(size: tuple[int, int]) -> None:
            if content_rgb is not None:
                objective.content_target = self.oracle.features(resize(content_rgb, size))[self.content]

        optimiser = Optimiser(self.oracle, lambda: Adam(self.settings.lr, (0.0, 1.0)), fresh_rule_per_octave=True,
                              shrinkable=True, retarget=retarget)
        with torch.enable_grad(), torch.inference_mode(False):
            out, done, cancelled, values = optimiser.run_octaves(start.to(self.model.device), sizes, steps, generator,
                                                                 "resize", cancel, progress)
        return StyleResult(out.clamp(0, 1).detach().cpu(), [-v for v in values], done, cancelled,
                           time.perf_counter() - began, optimiser.working_size(sizes[-1]), optimiser.fallbacks)

    def texture(self, height: int, width: int, steps: int | None = None, progress=None,
                cancel: CancelSignal = None) -> StyleResult:
        """A (1, 3, height, width) texture with the style's Gram matrices, from seeded noise."""
        s = self.settings
        self.oracle.objective = self.objective(None)
        generator = seeded(s.seed)
        sizes = resize_sizes(height, width, 1 - s.octaves, 0, 1.5)
        start = noise_start(height, width, 0.1, generator)  # run_octaves shrinks it to the first level
        return self._run(start, sizes, s.steps if steps is None else steps, generator, progress, cancel)

    def stylise(self, content_rgb: torch.Tensor, start: torch.Tensor | None = None, steps: int | None = None,
                progress=None, cancel: CancelSignal = None) -> StyleResult:
        """Restyle (1, 3, H, W) RGB [0, 1] content; the optimisation starts from ``start`` (default: the content)."""
        s = self.settings
        content_rgb = content_rgb.to(self.model.device).float()
        self.oracle.objective = self.objective(content_rgb)
        first = (content_rgb if start is None else start.to(self.model.device).float()).clone()
        return self._run(first, [tuple(content_rgb.shape[-2:])], s.steps if steps is None else steps,
                         seeded(s.seed), progress, cancel, content_rgb)

    def close(self) -> None:
        self.oracle.close()

    def __enter__(self) -> "Stylist":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LiveStylist:
    """Stylise a stream of frames: ``step(frame) -> stylised frame``, (H, W, 3) uint8 BGR both.

    The first frame (or after ``reset()`` / a size change) gets ``first_steps`` from the content;
    every later frame starts from the previous stylised frame warped along the optical flow, the
    occluded pixels (where the flow fails) from the new frame (dream/temporal.py's temporal_seed
    with full blend), and gets ``steps`` more. ``fps``: moving average of frames per second.
    """

    def __init__(self, stylist: Stylist, steps: int = 3, first_steps: int | None = None, max_side: int | None = None,
                 flow: str = "dis"):
        self.stylist = stylist
        self.steps = steps
        self.first_steps = first_steps if first_steps is not None else stylist.settings.steps
        self.max_side = max_side
        self.fallbacks: list[str] = []  # out-of-memory fallbacks so far (they lower max_side)
        self.warper = FlowWarper(flow)
        self.rate = FrameRate()
        self.reset()

    @property
    def fps(self) -> float:
        return self.rate.fps

    def reset(self) -> None:
        self._prev_frame = None
        self._prev_styled = None

    def step(self, frame: np.ndarray, cancel: CancelSignal = None, progress=None) -> np.ndarray:
        work = _fit_side(frame, self.max_side)
        content = bgr_to_rgb01(work)
        if self._prev_frame is None or self._prev_frame.shape != work.shape:
            start, steps = None, self.first_steps
        else:
            seed = temporal_seed(work, self._prev_frame, self._prev_styled, self.warper, blend=1.0)
            start, steps = bgr_to_rgb01(np.round(seed).astype(np.uint8)), self.steps
        result = self.stylist.stylise(content, start, steps, progress, cancel)
        if result.fallbacks:  # out of GPU memory: the following frames start at the size that fitted
            self.max_side, self.fallbacks = max(result.size), self.fallbacks + result.fallbacks
        styled = rgb01_to_bgr(result.rgb)
        self._prev_frame, self._prev_styled = work, styled
        self.rate.tick()
        if styled.shape != frame.shape:
            styled = cv2.resize(styled, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
        return styled


def _fit_side(image: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    k = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
