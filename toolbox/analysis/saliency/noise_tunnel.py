"""Noise tunnel: any single-pass map averaged over noisy copies of the input, as captum's NoiseTunnel.

    smoothgrad   mean_i  m(x + n_i)                    (Smilkov et al. 2017)
    squaregrad   mean_i  m(x + n_i)^2                  (Hooker et al. 2019; captum "smoothgrad_sq")
    vargrad      mean_i  m(x + n_i)^2 - (mean_i m(x + n_i))^2   (Adebayo et al. 2018)

m is the base method (``base``: gradient, input_x_gradient, guided, deconvnet, an LRP composite,
or a gradient CAM at a layer), computed on the noisy copies in batches: one forward and one
backward per batch. The target class is resolved once on the clean image.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from toolbox.analysis.saliency.backprop import backprop
from toolbox.analysis.saliency.cams import GRADIENT_CAMS, cam_from
from toolbox.analysis.saliency.lrp import LRP_COMPOSITES, lrp_rules
from toolbox.analysis.saliency.targets import ClassTarget, Target, resolve_top1

NOISE_TUNNELS = ("smoothgrad", "squaregrad", "vargrad")
PIXEL_BASES = {"gradient": "plain", "input_x_gradient": "plain", "guided": "guided", "deconvnet": "deconv"}
BASES = (*PIXEL_BASES, *LRP_COMPOSITES, *GRADIENT_CAMS)


def smoothgrad_noise(x: torch.Tensor, samples: int, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(samples, 3, H, W) Gaussian noise with std ``sigma`` times the value range of ``x``
    (SmoothGrad's relative noise level; the paper finds 0.1-0.2 works best)."""
    scale = sigma * float(x.max() - x.min())
    noise = torch.randn((samples, *x.shape[1:]), generator=generator, device="cpu")
    return (noise * scale).to(x.device, x.dtype)


def batch_maps(model: nn.Module, batch: torch.Tensor, target: Target, base: str, layer: str | None = None) -> torch.Tensor:
    """``base``'s maps of every image of ``batch`` (B, 3, H, W), one forward and one backward:
    (B, 3, H, W) for pixel methods, (B, h, w) for gradient CAMs at ``layer``."""
    if base in GRADIENT_CAMS:
        if layer is None:
            raise ValueError(f"{base} needs a layer")
        result = backprop(model, batch, target, input_rule=None, layer=layer)
        return cam_from(base, result.activations[layer], result.layer_gradient)
    if base in LRP_COMPOSITES:
        return backprop(model, batch, target, rule_hooks=lambda: lrp_rules(model, base, batch), relevance=True).input_gradient
    if base not in PIXEL_BASES:
        raise ValueError(f"noise tunnel base must be one of {', '.join(BASES)}, not {base!r}")
    gradient = backprop(model, batch, target, input_rule=PIXEL_BASES[base]).input_gradient
    return gradient * batch if base == "input_x_gradient" else gradient


def noise_tunnel_map(model: nn.Module, x: torch.Tensor, target: Target, kind: str = "smoothgrad",
                     base: str = "gradient", layer: str | None = None, samples: int = 16, sigma: float = 0.15,
                     noise: torch.Tensor | None = None, batch_size: int = 16,
                     generator: torch.Generator | None = None,
                     maps: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """``kind`` (smoothgrad | squaregrad | vargrad) of ``base`` for ``x`` (1, 3, H, W): the shape of
    one base map ((3, H, W), or (h, w) for CAMs).

    noise: (samples, 3, H, W) to add instead of drawing it (captum NoiseTunnel's noise gives its
      result exactly); else Gaussian with std ``sigma`` x the value range of x.
    maps: batch -> maps, replacing ``base`` (for callers with their own method).
    progress: called with the fraction of samples done after each batch (it may raise to stop).
    """
    if kind not in NOISE_TUNNELS:
        raise ValueError(f"noise tunnel kind must be one of {', '.join(NOISE_TUNNELS)}, not {kind!r}")
    if noise is None:
        noise = smoothgrad_noise(x, samples, sigma, generator)
    if isinstance(target, ClassTarget) and target.index is None:
        with torch.inference_mode():
            target = resolve_top1(target, model(x))
    maps = maps or (lambda batch: batch_maps(model, batch, target, base, layer))
    total = total_sq = None
    for start in range(0, noise.shape[0], batch_size):
        m = maps(x + noise[start : start + batch_size]).float()
        total = m.sum(0) if total is None else total + m.sum(0)
        if kind != "smoothgrad":
            total_sq = (m * m).sum(0) if total_sq is None else total_sq + (m * m).sum(0)
        if progress is not None:
            progress(min(start + batch_size, noise.shape[0]) / noise.shape[0])
    count = noise.shape[0]
    if kind == "smoothgrad":
        return total / count
    if kind == "squaregrad":
        return total_sq / count
    return total_sq / count - (total / count) ** 2
