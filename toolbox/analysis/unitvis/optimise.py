"""Activation maximisation: optimise one image per channel, all channels of a batch at once.

``unit_images(model, layer, channels, settings)`` returns (N, 3, S, S) float32 RGB in [0, 1],
image n maximising ``channels[n]`` of ``layer``. The forward pass stops at the layer (a forward
hook raises), so deeper layers cost nothing. Every batch element has its own seeded generator
(seed, channel), so a channel's image is the same whether it is computed alone or in a batch.

Two presets, one per school:
- ``lucid``: Fourier parameterisation with 1/f decay, colour decorrelation, sigmoid, standard
  transforms (pad 12, jitter 8, scale 0.9-1.1, rotate +-10, jitter 4), Adam lr 0.05, channel mean.
- ``yosinski``: pixels, normalised gradient ascent, L2 decay, Gaussian blur every 4 steps,
  small-norm clipping, spatial centre neuron.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional, Sequence

import numpy as np
import torch
from torch import nn

from toolbox.analysis.unitvis import regularisers as reg
from toolbox.analysis.objectives.unit import Objective, channel_values
from toolbox.analysis.optimise.loop import Optimiser
from toolbox.analysis.optimise.param import FourierImage, PixelImage
from toolbox.analysis.optimise.progress import CancelSignal, Cancelled
from toolbox.analysis.optimise.steps import Adam, NormalisedAscent
from toolbox.analysis.optimise.transforms import TransformSettings, random_transform
from toolbox.errors import DeepvisError
from toolbox.models.capture import _first_tensor, resolve_module
from toolbox.models.registry import LoadedModel

ALGORITHM_VERSION = 1  # bump when a change alters the images, so cached ones are recomputed


@dataclass(frozen=True)
class UnitVisSettings:
    """Everything that decides a unit image (and so its cache key)."""

    size: int = 128  # square image side, pixels
    steps: int = 128
    parameterisation: Literal["fourier", "pixel"] = "fourier"
    decay_power: float = 1.0  # Fourier: amplitude scale 1/f^decay_power
    decorrelate: bool = True  # Fourier: optimise in the decorrelated colour basis
    optimiser: Literal["adam", "ascent"] = "adam"  # ascent: x += lr * g / max|g| (Yosinski)
    lr: float = 0.05
    transforms: Optional[TransformSettings] = field(default_factory=TransformSettings)
    objective: Objective = "mean"
    # Yosinski et al. regularisers (pixel parameterisation only); 0 disables each.
    l2_decay: float = 0.0
    blur_every: int = 0
    blur_sigma: float = 0.0
    small_norm_pct: float = 0.0
    small_contribution_pct: float = 0.0
    seed: int = 0

    def __post_init__(self):
        uses_regularisers = self.l2_decay or self.blur_every or self.small_norm_pct or self.small_contribution_pct
        if uses_regularisers and (self.parameterisation != "pixel" or self.optimiser != "ascent"):
            raise DeepvisError("the Yosinski regularisers (decay, blur, clipping) need parameterisation 'pixel' "
                               "and optimiser 'ascent' (preset yosinski)")
        if self.optimiser == "ascent" and self.parameterisation != "pixel":
            raise DeepvisError("optimiser 'ascent' works on parameterisation 'pixel'; use 'adam' for 'fourier'")
        if self.size < 8 or self.steps < 0:
            raise DeepvisError(f"unit image size must be >= 8 and steps >= 0 (got {self.size}, {self.steps})")

    def key(self) -> str:
        """16 hex digits identifying these settings (and the algorithm version)."""
        text = json.dumps({"v": ALGORITHM_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


PRESETS: dict[str, UnitVisSettings] = {
    "lucid": UnitVisSettings(),
    "yosinski": UnitVisSettings(
        parameterisation="pixel", decorrelate=False, optimiser="ascent", lr=0.05, transforms=None,
        objective="centre", l2_decay=0.01, blur_every=4, blur_sigma=0.5, small_norm_pct=10.0,
    ),
}
DEFAULT_PRESET = "lucid"


def preset(name: str, **overrides) -> UnitVisSettings:
    """A named preset, with any fields replaced (``preset('lucid', steps=64, size=96)``)."""
    if name not in PRESETS:
        raise DeepvisError(f"unknown unit-vis preset '{name}': choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


class _StopForward(Exception):
    pass


class LayerCut:
    """``with LayerCut(module, layer) as cut: act = cut(x)`` -- forward that stops at ``layer``
    and returns its output with the autograd graph; the hook is removed on exit.

    The hook acts only on forwards started by ``cut(x)`` in the same thread, so a live app may run
    its own frame forwards on the same model meanwhile (another thread) untouched."""

    def __init__(self, module: nn.Module, layer: str):
        self.module, self.layer = module, layer
        self._target = resolve_module(module, layer)
        self._out: Optional[torch.Tensor] = None
        self._handle = None
        self._caller: Optional[int] = None  # thread id of the forward in progress

    def _hook(self, mod, inputs, output):
        if self._caller != threading.get_ident():
            return None
        self._out = _first_tensor(output)
        raise _StopForward

    def __enter__(self) -> "LayerCut":
        self._handle = self._target.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._out = None
        self._caller = threading.get_ident()
        try:
            self.module(x)
        except _StopForward:
            pass
        finally:
            self._caller = None
        if self._out is None:
            raise DeepvisError(f"layer '{self.layer}' is not reached by the forward pass: pick another (deepvis layers)")
        out, self._out = self._out, None
        return out


def channel_generator(seed: int, channel: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + channel)


def unit_images(model: LoadedModel, layer: str, channels: Sequence[int],
                settings: UnitVisSettings = PRESETS[DEFAULT_PRESET],
                on_step: Optional[Callable[[int, int], None]] = None, cancel: CancelSignal = None) -> torch.Tensor:
    """Optimise one image per channel: -> (N, 3, S, S) float32 RGB in [0, 1] on the CPU.

    on_step(step, steps) is called after each step; ``cancel`` (an Event or a callable) is checked
    before each step and raises ``Cancelled``. Gradients flow only into the images (the model is frozen).
    """
    s = settings
    channels = [int(c) for c in channels]
    device = model.device
    gens = [channel_generator(s.seed, c) for c in channels]
    if s.parameterisation == "fourier":
        param = FourierImage(gens, s.size, device, s.decay_power, s.decorrelate)
    else:
        param = PixelImage(gens, s.size, device)
    if s.optimiser == "adam":
        rule = Adam(s.lr)
    else:
        rule = NormalisedAscent(s.lr, "max", (-0.5, 0.5), lambda y, grad, step: _yosinski_regularise(y, grad, step, s))
    transform = (lambda x: random_transform(x, s.transforms, gens)) if s.transforms is not None else None
    target = torch.tensor(channels, dtype=torch.long, device=device)
    checked = []

    def gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.requires_grad_(True)
        inp = model.preprocess.normalise(x)
        if model.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        act = cut(inp)
        if act.dim() == 4 and not checked:
            _check_channels(layer, act.shape[1], channels)
            checked.append(True)
        total = channel_values(act, target, s.objective).sum()
        return torch.autograd.grad(total, x)[0], total.detach()

    progress = None if on_step is None else (lambda p: on_step(p.step, p.steps))
    with LayerCut(model.module, layer) as cut, torch.inference_mode(False), torch.enable_grad():
        _, cancelled = Optimiser(gradient, rule, transform=transform).run(param, s.steps, gens[0], cancel, progress)
    if cancelled:
        raise Cancelled
    with torch.no_grad():
        return param.image().detach().clamp(0, 1).float().cpu()


def _check_channels(layer: str, available: int, channels: list[int]) -> None:
    bad = [c for c in channels if not 0 <= c < available]
    if bad:
        raise DeepvisError(f"layer '{layer}' has channels 0..{available - 1}, not {bad[0]}: pick channels in that range")


def _yosinski_regularise(y: torch.Tensor, grad: torch.Tensor, step: int, s: UnitVisSettings) -> torch.Tensor:
    """The regularisers r_theta of Yosinski et al. on the stepped centred pixels y (N, 3, S, S)."""
    y = reg.l2_decay(y, s.l2_decay)
    y = reg.blur_every(y, step, s.blur_every, s.blur_sigma)
    y = reg.clip_small_norm(y, s.small_norm_pct)
    return reg.clip_small_contribution(y, grad, s.small_contribution_pct)


def to_bgr_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) RGB in [0, 1] -> (N, S, S, 3) uint8 BGR (rounded)."""
    levels = (images.clamp(0, 1) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(levels.flip(1).permute(0, 2, 3, 1).cpu().numpy())
