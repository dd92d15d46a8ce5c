"""The input-optimisation loop shared by DeepDream, unit pictures, inversion and style transfer.

One step (``ascent_step``):
  draw a roll of up to +-jitter pixels -> picture = parameterisation.image() -> optional random
  transform -> the gradient oracle on the rolled picture gives (d objective / d picture, objective)
  -> unroll -> back through the transform and parameterisation when they have an autograd graph
  -> the step rule updates the parameters (normalised ascent or Adam; the objective is maximised).
``Optimiser.run`` repeats it with cancel (checked before every step) and progress (after every
step); ``Optimiser.run_octaves`` does so over an octave pyramid of a pixel image, in one of the
two DeepDream families (optimise/octaves.py).

Out of GPU memory, whole-image objectives (inversion, style: ``shrinkable=True``; their Gram and
feature-distance losses are not sums over positions, so optimise/tiling.py cannot split them):
free the cache, halve the working size (the pixels are resized, the step rule starts fresh
moments, ``retarget(size)`` recomputes the targets that depend on the size, such as content
features) and retry the same step; later octaves are scaled alike. The size used is in every
``Progress.size`` and in ``fallbacks``; below ``MIN_SIDE`` on the short side it gives up with a
one-line error. DeepDream's tiled oracle handles its own out-of-memory (tiles, smaller batches).

The gradient oracle ``(1|N, 3, H, W) picture -> (gradient of the same shape, objective scalar)``
is where the network, the objective, tiling and the device policy live (see GradientOracle
implementations: dream/core.py, unitvis/optimise.py, inversion.py, style.py). Every random draw
comes from the ``generator`` passed in, so one seed gives one result.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from toolbox.analysis.optimise.device import OOM_ERRORS
from toolbox.analysis.optimise.octaves import detail_pyramid, resize
from toolbox.analysis.optimise.param import Pixels
from toolbox.analysis.optimise.progress import CancelSignal, Progress, cancel_check
from toolbox.analysis.optimise.tiling import roll, unroll
from toolbox.errors import DeepvisError

GradientOracle = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Transform = Callable[[torch.Tensor], torch.Tensor]
StepRule = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor], int], None]
Retarget = Callable[[tuple[int, int]], None]
MIN_SIDE = 32  # pixels on the short side: the smallest working size the out-of-memory fallback goes to


def random_shift(generator: torch.Generator, jitter: int) -> tuple[int, int]:
    """(dy, dx) uniform in [-jitter, jitter]; (0, 0) without drawing when jitter is 0."""
    if not jitter:
        return (0, 0)
    return tuple(torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist())


def ascent_step(param, gradient: GradientOracle, rule: StepRule, generator: torch.Generator, step: int = 0,
                jitter: int = 0, transform: Optional[Transform] = None) -> torch.Tensor:
    """One step on ``param`` (a parameterisation: ``image()``, ``parameters()``) -> objective before it."""
    shift = random_shift(generator, jitter)
    with torch.enable_grad():
        picture = param.image()
        if transform is not None:
            picture = transform(picture)
    grad, objective = gradient(roll(picture.detach(), shift))
    grad = unroll(grad, shift)
    params = param.parameters()
    grads = torch.autograd.grad(picture, params, grad) if picture.requires_grad else (grad,)
    rule(params, grads, step)
    return objective


class Optimiser:
    """A gradient oracle, a step rule and the randomness of a run: ``run`` / ``run_octaves``.

    rule_for_octave: a callable returning the step rule for each octave (a fresh Adam per level),
    or one rule used throughout. shrinkable: on out-of-memory, continue at half the working size
    (pixel parameterisations only); retarget(size (H, W)) then rebuilds the size-dependent targets.
    ``scale``: working size / requested size; ``fallbacks``: what the out-of-memory policy did.
    """

    def __init__(self, gradient: GradientOracle, rule: StepRule | Callable[[], StepRule], jitter: int = 0,
                 transform: Optional[Transform] = None, fresh_rule_per_octave: bool = False,
                 shrinkable: bool = False, retarget: Optional[Retarget] = None):
        self.gradient, self.jitter, self.transform = gradient, jitter, transform
        self._rule, self._fresh = rule, fresh_rule_per_octave
        self.shrinkable, self.retarget = shrinkable, retarget
        self.scale = 1.0
        self.fallbacks: list[str] = []

    def _step(self, param, rule: StepRule, generator: torch.Generator, step: int) -> torch.Tensor:
        """ascent_step, with the out-of-memory policy of whole-image objectives (see the module)."""
        size = None
        while True:
            try:
                if size is not None and self.retarget is not None:
                    self.retarget(size)
                return ascent_step(param, self.gradient, rule, generator, step, self.jitter, self.transform)
            except OOM_ERRORS:
                if not (self.shrinkable and isinstance(param, Pixels)):
                    raise
            size = self._halve(param)  # outside the handler: the failed pass' tensors are released by now

    def _halve(self, pixels: Pixels) -> tuple[int, int]:
        if pixels.rgb.is_cuda:
            torch.cuda.empty_cache()
        height, width = pixels.rgb.shape[-2:]
        size = (height // 2, width // 2)
        if min(size) < MIN_SIDE:
            raise DeepvisError(f"out of GPU memory even at {width}x{height}: use a smaller --size, a shallower "
                               "layer, or --device cpu") from None
        pixels.rgb = resize(pixels.rgb, size).contiguous()  # a new tensor: the step rule starts fresh moments
        self.scale *= size[0] / height
        self.fallbacks.append(f"out of GPU memory at {width}x{height}: continued at {size[1]}x{size[0]}")
        return size

    def working_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) a level of ``size`` is optimised at: scaled down after out-of-memory fallbacks."""
        if self.scale == 1.0:
            return tuple(size)
        return (max(1, round(size[0] * self.scale)), max(1, round(size[1] * self.scale)))

    def run(self, param, steps: int, generator: torch.Generator, cancel: CancelSignal = None, progress=None,
            record_objective: bool = False, octave: tuple[int, int] = (0, 1), done: int = 0,
            total: int | None = None, rule: StepRule | None = None) -> tuple[list[torch.Tensor], bool]:
        """``steps`` steps on ``param`` -> (objective per step (device scalars), cancelled).

        ``progress(Progress)`` after every step; ``cancel`` checked before every step, so a cancel
        takes effect within one step and ``param`` holds the partial result."""
        rule = rule or (self._rule() if self._fresh else self._rule)
        is_cancelled = cancel_check(cancel)
        total = steps if total is None else total
        objectives: list[torch.Tensor] = []
        for i in range(steps):
            if is_cancelled():
                return objectives, True
            objective = self._step(param, rule, generator, i)
            objectives.append(objective)
            if progress is not None:
                value = float(objective) if record_objective else None
                size = tuple(param.rgb.shape[-2:]) if isinstance(param, Pixels) else None
                progress(Progress(octave[0], octave[1], i + 1, steps, done + i + 1, total, value, size))
        return objectives, False

    def run_octaves(self, rgb: torch.Tensor, sizes: list[tuple[int, int]], steps: int, generator: torch.Generator,
                    family: str = "resize", cancel: CancelSignal = None, progress=None,
                    record_objective: bool = False) -> tuple[torch.Tensor, int, bool, list[float]]:
        """Optimise the pixels of a (1, 3, H, W) RGB [0, 1] image over the octave ``sizes`` (smallest first).

        family "resize": the image itself is resized to each level; "detail": each level is the
        original at that size plus the upsampled change made so far. -> (image (1, 3, H, W) fp32 at
        the input size, steps done, cancelled, objectives). The input tensor is not modified.
        Levels after an out-of-memory fallback run at ``scale`` times their size.
        """
        height, width = rgb.shape[-2:]
        bases = detail_pyramid(rgb, sizes) if family == "detail" else None
        x = rgb.float()
        detail = None
        objectives: list[torch.Tensor] = []
        cancelled = False
        total = len(sizes) * steps
        rule = None if self._fresh else self._rule
        for k, size in enumerate(sizes):
            size = self.working_size(size)
            if bases is not None:
                base = resize(bases[k], size)
                x = base if detail is None else base + resize(detail, size)
            else:
                x = resize(x, size)
            if x is rgb or (bases is not None and x is bases[k]):
                x = x.clone()  # the step rule updates in place
            pixels = Pixels(x)
            values, cancelled = self.run(pixels, steps, generator, cancel, progress, record_objective,
                                         (k, len(sizes)), len(objectives), total, rule)
            objectives += values
            x = pixels.rgb
            if bases is not None:
                detail = x - resize(bases[k], tuple(x.shape[-2:]))
            if cancelled:
                break
        out = resize(x, (height, width))
        return out, len(objectives), cancelled, [float(o) for o in objectives]
