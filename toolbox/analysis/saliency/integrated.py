"""Integrated gradients (Sundararajan et al. 2017), path steps batched."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from toolbox.analysis.saliency.backprop import backprop
from toolbox.analysis.saliency.targets import ClassTarget, Target, resolve_top1

QUADRATURES = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def path_weights(steps: int, method: str = "gausslegendre") -> tuple[list[float], list[float]]:
    """(alphas in [0, 1], step weights summing to 1) of the quadrature along the straight path;
    the same nodes as captum IntegratedGradients so results agree exactly."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (1 + nodes)).tolist(), (0.5 * weights).tolist()
    if method not in QUADRATURES or steps < 2:
        raise ValueError(f"method must be one of {', '.join(QUADRATURES)} (riemann needs 2+ steps), not {method!r}")
    kind = method.split("_")[1]
    weights = [1 / steps] * steps
    if kind == "trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        alphas = torch.linspace(0, 1, steps)
    elif kind == "left":
        alphas = torch.linspace(0, 1 - 1 / steps, steps)
    elif kind == "right":
        alphas = torch.linspace(1 / steps, 1, steps)
    else:
        alphas = torch.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps)
    return alphas.tolist(), weights


def integrated_gradients_map(model: nn.Module, x: torch.Tensor, target: Target, steps: int = 32,
                             method: str = "gausslegendre", baseline: float | torch.Tensor = 0.0,
                             batch_size: int = 32, progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """(3, H, W): (x - baseline) times the path integral of the gradient from baseline to x.
    baseline is in model-input units (0 is the mean colour for ImageNet-normalised inputs).
    The maps sum to about score(x) - score(baseline) (completeness). progress: called with the
    fraction of steps done after each batch (it may raise to stop)."""
    alphas, weights = path_weights(steps, method)
    baseline = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    if isinstance(target, ClassTarget) and target.index is None:
        with torch.inference_mode():
            target = resolve_top1(target, model(x))
    total = torch.zeros_like(x[0])
    for start in range(0, steps, batch_size):
        a = torch.tensor(alphas[start : start + batch_size], dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        w = torch.tensor(weights[start : start + batch_size], dtype=torch.float32, device=x.device).view(-1, 1, 1, 1)
        points = baseline + a * (x - baseline)
        total += (backprop(model, points, target).input_gradient * w).sum(0)
        if progress is not None:
            progress(min(start + batch_size, steps) / steps)
    return total * (x - baseline)[0]
