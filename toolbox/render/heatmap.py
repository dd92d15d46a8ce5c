"""Saliency maps as pictures: an explicit post-processing chain, then overlay or side pane.

    raw map (3, H, W) or (h, w), signed
      -> sign          abs | positive | negative, channels reduced by their maximum -> (h, w) >= 0
      -> clip          divide by the map's ``clip_percentile`` percentile, clip to [0, 1]
      -> upsample      bilinear to the model view (S, S)
      -> smooth        Gaussian blur, sigma in output pixels (0: off), so it means the same for every method
      -> colormap      256-level lookup table -> (S, S, 3) uint8 BGR
      -> blend         alpha over the model view ("overlay") or alone ("side")

Pure torch until the final image; works on any device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from toolbox.render.colormap import apply_colormap
from toolbox.render.mosaic import to_levels

Sign = Literal["abs", "positive", "negative"]
Placement = Literal["overlay", "side"]


@dataclass(frozen=True)
class HeatmapStyle:
    sign: Sign = "abs"
    clip_percentile: float = 99.0  # robust maximum: one hot pixel must not black out the rest
    smooth_sigma: float = 0.0  # Gaussian sigma in output pixels
    colormap: str = "jet"
    alpha: float = 0.5  # weight of the heatmap in the overlay
    placement: Placement = "overlay"

    def with_(self, **changes) -> "HeatmapStyle":
        return replace(self, **changes)


def signed_part(saliency: torch.Tensor, sign: Sign = "abs") -> torch.Tensor:
    """(3, H, W) or (H, W) signed map -> (H, W) >= 0: |m|, max(m, 0) or max(-m, 0), then the
    maximum over colour channels (Simonyan et al.'s reduction)."""
    m = saliency.float()
    if sign == "abs":
        m = m.abs()
    elif sign == "positive":
        m = m.clamp_min(0)
    elif sign == "negative":
        m = (-m).clamp_min(0)
    else:
        raise ValueError(f"sign must be abs, positive or negative, not {sign!r}")
    return m.amax(0) if m.dim() == 3 else m


def clip_to_unit(m: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """(H, W) >= 0 -> [0, 1]: divided by its ``percentile`` percentile (by its maximum when that
    percentile is 0), clipped. An all-zero map stays zero."""
    flat = m.flatten()
    top = flat.max()
    if top <= 0:
        return torch.zeros_like(m)
    scale = torch.quantile(flat, percentile / 100.0) if percentile < 100 else top
    if scale <= 0:
        scale = top
    return (m / scale).clamp(0, 1)


def gaussian_blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """(H, W) -> (H, W) separable Gaussian blur, reflect-padded; sigma <= 0 returns m."""
    if sigma <= 0:
        return m
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=m.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    image = m[None, None]
    pad = min(radius, m.shape[0] - 1, m.shape[1] - 1)
    if pad < radius:  # tiny maps: reflect padding cannot exceed the map
        image = F.pad(image, (radius, radius, radius, radius), mode="replicate")
    else:
        image = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    image = F.conv2d(image, kernel.view(1, 1, 1, -1))
    image = F.conv2d(image, kernel.view(1, 1, -1, 1))
    return image[0, 0]


def upsample(m: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(h, w) -> (size, size) bilinear (align_corners=False, as cv2.resize)."""
    size = (size, size) if isinstance(size, int) else size
    if tuple(m.shape) == tuple(size):
        return m
    return F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def heatmap_levels(saliency: torch.Tensor, size: int | tuple[int, int], style: HeatmapStyle = HeatmapStyle()) -> torch.Tensor:
    """Raw map -> (size, size) float32 in [0, 1]: sign, clip, upsample, smooth (the chain up to
    the colormap). Smoothing runs at output resolution so sigma means the same for every method."""
    m = clip_to_unit(signed_part(saliency, style.sign), style.clip_percentile)
    return gaussian_blur(upsample(m, size), style.smooth_sigma).clamp(0, 1)


def render_heatmap(saliency: torch.Tensor, view: np.ndarray, style: HeatmapStyle = HeatmapStyle()) -> np.ndarray:
    """Raw map + model view (S, S, 3) uint8 BGR -> (S, S, 3) uint8 BGR: the colour heatmap blended
    over the view (placement "overlay") or alone (placement "side", for a pane beside the input)."""
    levels = heatmap_levels(saliency, view.shape[:2], style)
    heat = apply_colormap(to_levels(levels), style.colormap)
    if style.placement == "side":
        return heat.cpu().numpy()
    base = torch.from_numpy(np.ascontiguousarray(view)).to(heat.device).float()
    mixed = (1 - style.alpha) * base + style.alpha * heat.float()
    return mixed.round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def gradient_picture(saliency: torch.Tensor, size: int | None = None, percentile: float = 99.0) -> np.ndarray:
    """(3, H, W) signed RGB input gradient -> (S, S, 3) uint8 BGR picture around mid-grey, as the
    Deep Visualization Toolbox shows guided backprop and deconvnet: colour where a pixel change
    raises the score."""
    g = saliency.float()
    scale = torch.quantile(g.abs().flatten(), percentile / 100.0)
    scale = scale if scale > 0 else g.abs().max().clamp_min(1e-12)
    rgb = (0.5 + 0.5 * (g / scale).clamp(-1, 1))
    if size is not None and rgb.shape[-1] != size:
        rgb = F.interpolate(rgb[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    return to_levels(rgb.flip(0).permute(1, 2, 0)).contiguous().cpu().numpy()
