"""Input-gradient maps: vanilla gradient, gradient x input, guided backprop, deconvnet, SmoothGrad.

All take ``x`` (1, 3, H, W) as the model expects it and return (3, H, W) float32 signed maps in
model-input units (reduce to (H, W) with toolbox.render.heatmap). Each is one forward and one
backward pass, SmoothGrad one pass over a batch of noisy copies.
"""
from __future__ import annotations

import torch
from torch import nn

from toolbox.analysis.saliency.backprop import backprop
from toolbox.analysis.saliency.targets import ClassTarget, Target, resolve_top1


def gradient_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """d score / d x (Simonyan et al. 2014), signed; equals captum Saliency(abs=False)."""
    return backprop(model, x, target).input_gradient[0]


def gradient_x_input_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """x * d score / d x; equals captum InputXGradient."""
    return (backprop(model, x, target).input_gradient * x)[0]


def guided_backprop_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015), ReLU6 and functional ReLU included."""
    return backprop(model, x, target, input_rule="guided").input_gradient[0]


def deconvnet_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Deconvnet backward rule (Zeiler & Fergus 2014), ReLU6 and functional ReLU included."""
    return backprop(model, x, target, input_rule="deconv").input_gradient[0]


def smoothgrad_noise(x: torch.Tensor, samples: int, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(samples, 3, H, W) Gaussian noise with std ``sigma`` times the value range of ``x``
    (SmoothGrad's relative noise level; the paper finds 0.1-0.2 works best)."""
    scale = sigma * float(x.max() - x.min())
    noise = torch.randn((samples, *x.shape[1:]), generator=generator, device="cpu")
    return (noise * scale).to(x.device, x.dtype)


def smoothgrad_map(model: nn.Module, x: torch.Tensor, target: Target, samples: int = 16, sigma: float = 0.15,
                   noise: torch.Tensor | None = None, batch_size: int = 16,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean gradient over noisy copies of x (Smilkov et al. 2017), noisy copies batched.

    noise: (samples, 3, H, W) to add instead of drawing it (captum NoiseTunnel's noise gives its
      result exactly). The top-1 class is taken from the clean image, not from each noisy copy.
    """
    if noise is None:
        noise = smoothgrad_noise(x, samples, sigma, generator)
    if isinstance(target, ClassTarget) and target.index is None:
        with torch.inference_mode():
            target = resolve_top1(target, model(x))
    total = torch.zeros_like(x[0])
    for start in range(0, noise.shape[0], batch_size):
        noisy = x + noise[start : start + batch_size]
        total += backprop(model, noisy, target).input_gradient.sum(0)
    return total / noise.shape[0]
