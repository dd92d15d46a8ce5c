"""Step rules: how a gradient of the objective (to be maximised) changes the parameters.

A rule is called as ``rule(parameters, gradients, step)`` with the parameterisation's tensors and
d objective / d tensor for each; it updates the tensors in place.

- ``NormalisedAscent``: x += step_size * g / scale(g), then an optional regulariser, then a clip.
  The scale makes the step size mean the same for every model and layer (raw gradient scales
  differ by orders of magnitude): "mean-abs" (DeepDream, google notebook), "std" (TF2
  tutorial), "max" per image (Yosinski et al.: the most sensitive pixel moves by step_size).
- ``Adam``: torch's Adam on -objective (lucid, inversion, style).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

NORMS = ("mean-abs", "std", "max")

Regulariser = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (x, grad, step) -> new x


class NormalisedAscent:
    def __init__(self, step_size: float, norm: str = "mean-abs", clip: tuple[float, float] | None = (0.0, 1.0),
                 regularise: Regulariser | None = None):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}")
        self.step_size, self.norm, self.clip, self.regularise = step_size, norm, clip, regularise

    def scale(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "mean-abs":
            return torch.linalg.vector_norm(grad, 1) / grad.numel()
        if self.norm == "std":
            return grad.std()
        return grad.abs().amax(dim=tuple(range(1, grad.dim())), keepdim=True).clamp(min=1e-12)

    @torch.no_grad()
    def __call__(self, parameters: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor], step: int) -> None:
        for x, grad in zip(parameters, gradients):
            scale = self.scale(grad)
            if self.regularise is None:  # one pass each over the image: the norm, the update, the clip
                x.addcmul_(grad, self.step_size / (scale + 1e-8))
            else:
                x.copy_(self.regularise(x + self.step_size * (grad / scale), grad, step))
            if self.clip is not None:
                x.clamp_(*self.clip)


class Adam:
    """Adam on the parameters, minimising -objective (lr in the parameters' units)."""

    def __init__(self, lr: float = 0.05, clip: tuple[float, float] | None = None):
        self.lr, self.clip = lr, clip
        self._optimiser: torch.optim.Adam | None = None
        self._params: list[torch.Tensor] = []

    @torch.no_grad()
    def __call__(self, parameters: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor], step: int) -> None:
        params = list(parameters)
        if self._optimiser is None or any(p is not q for p, q in zip(params, self._params)) or len(params) != len(self._params):
            self._optimiser, self._params = torch.optim.Adam(params, lr=self.lr), params  # a new octave: fresh moments
        for p, g in zip(params, gradients):
            p.grad = -g
        self._optimiser.step()
        for p in params:
            p.grad = None
            if self.clip is not None:
                p.clamp_(*self.clip)
