"""Feature inversion: an image whose activation at one layer matches the frame's (Mahendran & Vedaldi).

``invert(rgb, model, layer, settings)`` starts from seeded noise and runs the shared engine
(analysis/optimise: pixels, Adam, jitter) on the loss of objectives/inversion.py, with Φ0 the
activation of the input at ``layer`` (``"logits"``: the pre-image of the network's output, so of
its top class). How much of the frame comes back shows what the layer keeps of it.
Images: (1, 3, H, W) float32 RGB in [0, 1].
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from toolbox.analysis.objectives.inversion import ALPHA_LAMBDA, InversionObjective, tv_lambda_for_depth
from toolbox.analysis.optimise.features import FeatureGradient
from toolbox.analysis.optimise.loop import Optimiser
from toolbox.analysis.optimise.network import LOGITS
from toolbox.analysis.optimise.octaves import resize
from toolbox.analysis.optimise.progress import CancelSignal, seeded
from toolbox.analysis.optimise.steps import Adam
from toolbox.errors import DeepvisError
from toolbox.models.registry import LoadedModel


@dataclass(frozen=True)
class InversionSettings:
    steps: int = 200
    lr: float = 0.05  # Adam, in RGB [0, 1] units
    jitter: int = 0  # pixels of random roll per step (a roll moves the picture against the fixed target: blur)
    alpha_lambda: float = ALPHA_LAMBDA
    tv_lambda: float | None = None  # None: the paper's schedule for the layer's depth
    noise_std: float = 0.1  # start: mid-grey plus this much Gaussian noise
    seed: int = 0

    def replace(self, **changes) -> "InversionSettings":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass
class InversionResult:
    rgb: torch.Tensor  # (1, 3, H, W) RGB [0, 1], on the CPU
    layer: str
    losses: list[float] = field(default_factory=list)  # -objective per step
    steps_done: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    size: tuple[int, int] = (0, 0)  # (H, W) optimised at: the input's, or smaller after running out of GPU memory
    fallbacks: list[str] = field(default_factory=list)  # what the out-of-memory policy did, in order


def layer_depth(model: LoadedModel, layer: str) -> float:
    """0..1: where ``layer`` sits among the model's visualisable layers (logits = 1)."""
    if layer == LOGITS:
        return 1.0
    model.check_layer(layer)
    names = model.layers
    return (names.index(layer) + 1) / (len(names) + 1) if layer in names else 0.5


def noise_start(height: int, width: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """(1, 3, H, W) mid-grey plus seeded Gaussian noise, clipped to [0, 1]."""
    return (0.5 + std * torch.randn(1, 3, height, width, generator=generator)).clamp_(0, 1)


def invert(rgb: torch.Tensor, model: LoadedModel, layer: str, settings: InversionSettings = InversionSettings(),
           progress=None, cancel: CancelSignal = None, oracle: FeatureGradient | None = None) -> InversionResult:
    """Reconstruct (1, 3, H, W) RGB [0, 1] ``rgb`` from its activation at ``layer``.

    progress(Progress) after each step; cancel checked before each step (the result then holds the
    partial reconstruction, ``cancelled=True``). Same seed, same result (CPU). Out of GPU memory,
    the engine continues at half the size with Φ0 recomputed there (the regularisers are
    normalised by H·W); the result is resized back to the input's size."""
    start = time.perf_counter()
    s = settings
    own = oracle is None
    oracle = oracle or FeatureGradient(model, [layer])
    try:
        target = oracle.features(rgb)[layer]
        if target.pow(2).sum() == 0:
            raise DeepvisError(f"layer '{layer}' is all zero for this image: pick another layer or image")
        tv = s.tv_lambda if s.tv_lambda is not None else tv_lambda_for_depth(layer_depth(model, layer))
        objective = oracle.objective = InversionObjective(layer, target, tv, s.alpha_lambda)
        generator = seeded(s.seed)
        size = tuple(rgb.shape[-2:])
        start_rgb = noise_start(*size, s.noise_std, generator).to(model.device)

        def retarget(working: tuple[int, int]) -> None:
            objective.target = oracle.features(resize(rgb, working))[layer]

        optimiser = Optimiser(oracle, Adam(s.lr, (0.0, 1.0)), s.jitter, shrinkable=True, retarget=retarget)
        with torch.enable_grad(), torch.inference_mode(False):
            out, done, cancelled, values = optimiser.run_octaves(start_rgb, [size], s.steps, generator,
                                                                 cancel=cancel, progress=progress)
        return InversionResult(out.detach().cpu(), layer, [-v for v in values], done, cancelled,
                               time.perf_counter() - start, optimiser.working_size(size), optimiser.fallbacks)
    finally:
        if own:
            oracle.close()
