"""Saliency maps as pictures: an explicit post-processing chain, then overlay or side pane.

    raw map (3, H, W) or (h, w)
      -> sign          abs | positive | negative: |m|, max(m, 0), max(-m, 0), colour channels reduced by
                       their maximum -> (h, w) >= 0; signed: colour channels summed -> (h, w) of either sign
      -> scale         unsigned: [floor, top] -> [0, 1], top the map's ``clip_percentile`` percentile (one hot
                       pixel must not dim the rest), floor 0 or the ``floor_percentile`` percentile (maps
                       without a natural zero, such as RISE's mean score); signed: divided by the
                       ``clip_percentile`` percentile of |m| -> [-1, 1], zero stays zero
      -> upsample      bilinear to the model view (S, S)
      -> smooth        Gaussian blur, sigma in output pixels (0: off), so it means the same for every method
      -> colour        perceptual lookup table (unsigned: ``colormap``; signed: ``diverging``, blue below zero,
                       red above)
      -> opacity       ``alpha`` times the scaled magnitude: zero is fully transparent, so the input stays
                       visible where the map says nothing, and only the salient parts are tinted
      -> blend         over the model view ("overlay") or over black ("side", a pane beside the input)

Pure torch until the final image; works on any device. ``method_style`` holds how each saliency
method's map is read (signed or not, with or without a floor).
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

Sign = Literal["abs", "positive", "negative", "signed"]
Placement = Literal["overlay", "side"]

# Maps whose sign is part of the answer (attributions that add up to the score difference, or a score
# drop): drawn with the diverging table. The plain-gradient family is drawn as |m| (Simonyan et al.).
SIGNED_METHODS = frozenset({"input_x_gradient", "integrated_gradients", "occlusion", "lrp_epsilon",
                            "lrp_epsilon_plus_flat", "lrp_alpha2_beta1", "deeplift", "shap", "kernel_shap",
                            "lime"})
# Maps without a natural zero: RISE is the mean class probability over the masks that show each pixel,
# so every pixel carries the image's base score; the median pixel (a robust estimate of that base) is
# the transparent floor, and only pixels that raise the score above it are tinted.
FLOORED_METHODS = frozenset({"rise"})
FLOOR_PERCENTILE = 50.0


@dataclass(frozen=True)
class HeatmapStyle:
    sign: Sign = "abs"
    clip_percentile: float = 99.0  # robust maximum: one hot pixel must not dim the rest
    floor_percentile: float | None = None  # None: the map's zero is transparent; else this percentile is
    smooth_sigma: float = 0.0  # Gaussian sigma in output pixels
    colormap: str = "inferno"  # unsigned maps: perceptually uniform, dark to bright
    diverging: str = "coolwarm"  # signed maps: blue (negative) - grey - red (positive)
    alpha: float = 0.8  # opacity of the strongest value; weaker values fade to transparent
    placement: Placement = "overlay"

    def with_(self, **changes) -> "HeatmapStyle":
        return replace(self, **changes)


def method_style(method: str, **changes) -> HeatmapStyle:
    """The style a saliency method's map is drawn in: signed maps diverging, RISE above its floor."""
    style = HeatmapStyle(sign="signed" if method in SIGNED_METHODS else "abs",
                         floor_percentile=FLOOR_PERCENTILE if method in FLOORED_METHODS else None)
    return style.with_(**changes)


def signed_part(saliency: torch.Tensor, sign: Sign = "abs") -> torch.Tensor:
    """(3, H, W) or (H, W) map -> (H, W): |m|, max(m, 0) or max(-m, 0) reduced over colour channels by
    their maximum (Simonyan et al.'s reduction), >= 0; or, for "signed", the channels' sum (the pixel's
    total attribution), of either sign."""
    m = saliency.float()
    if sign == "signed":
        return m.sum(0) if m.dim() == 3 else m
    if sign == "abs":
        m = m.abs()
    elif sign == "positive":
        m = m.clamp_min(0)
    elif sign == "negative":
        m = (-m).clamp_min(0)
    else:
        raise ValueError(f"sign must be abs, positive, negative or signed, not {sign!r}")
    return m.amax(0) if m.dim() == 3 else m


def _quantile(flat: torch.Tensor, percentile: float) -> torch.Tensor:
    """torch.quantile refuses more than 16M values; a strided sample is as good for a display scale."""
    if flat.numel() > 1 << 24:
        flat = flat[:: math.ceil(flat.numel() / (1 << 24))]
    return torch.quantile(flat, percentile / 100.0)


def clip_to_unit(m: torch.Tensor, percentile: float = 99.0, floor_percentile: float | None = None) -> torch.Tensor:
    """(H, W) >= 0 -> [0, 1]: (m - floor) / (top - floor), clipped; top is the ``percentile`` percentile
    (the maximum when that is not above the floor), floor 0 or the ``floor_percentile`` percentile.
    A constant map (nothing stands out) becomes all zero."""
    flat = m.flatten().float()
    floor = _quantile(flat, floor_percentile) if floor_percentile is not None else flat.new_tensor(0.0)
    top = flat.max()
    if top <= floor:
        return torch.zeros_like(m)
    scale = _quantile(flat, percentile) if percentile < 100 else top
    if scale <= floor:
        scale = top
    return ((m - floor) / (scale - floor)).clamp(0, 1)


def clip_signed(m: torch.Tensor, percentile: float = 99.0) -> torch.Tensor:
    """(H, W) signed -> [-1, 1]: divided by the ``percentile`` percentile of |m| (its maximum when that
    is 0), clipped; zero stays zero. An all-zero map stays zero."""
    magnitude = m.abs().flatten().float()
    top = magnitude.max()
    if top <= 0:
        return torch.zeros_like(m)
    scale = _quantile(magnitude, percentile) if percentile < 100 else top
    if scale <= 0:
        scale = top
    return (m / scale).clamp(-1, 1)


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
    """Raw map -> (size, size) float32: sign, scale, upsample, smooth (the chain up to the colour); in
    [0, 1], or in [-1, 1] for sign "signed". Smoothing runs at output resolution so sigma means the
    same for every method."""
    part = signed_part(saliency, style.sign)
    if style.sign == "signed":
        return gaussian_blur(upsample(clip_signed(part, style.clip_percentile), size), style.smooth_sigma).clamp(-1, 1)
    m = clip_to_unit(part, style.clip_percentile, style.floor_percentile)
    return gaussian_blur(upsample(m, size), style.smooth_sigma).clamp(0, 1)


def heatmap_colours(levels: torch.Tensor, style: HeatmapStyle = HeatmapStyle()) -> tuple[torch.Tensor, torch.Tensor]:
    """Levels from ``heatmap_levels`` -> ((S, S, 3) uint8 BGR colours, (S, S) float32 opacity in [0, alpha]):
    the colour of each value and how strongly it covers the picture (alpha times the magnitude)."""
    if style.sign == "signed":
        colours = apply_colormap(to_levels((levels + 1) / 2), style.diverging)
    else:
        colours = apply_colormap(to_levels(levels), style.colormap)
    return colours, style.alpha * levels.abs()


def render_heatmap(saliency: torch.Tensor, view: np.ndarray, style: HeatmapStyle = HeatmapStyle()) -> np.ndarray:
    """Raw map + model view (S, S, 3) uint8 BGR -> (S, S, 3) uint8 BGR: the coloured map over the view
    (placement "overlay") or over black (placement "side", a pane beside the input), each pixel as
    opaque as its value is strong, so where the map is ~0 the view shows untouched."""
    colours, opacity = heatmap_colours(heatmap_levels(saliency, view.shape[:2], style), style)
    if style.placement == "side":
        base = torch.zeros(colours.shape, dtype=torch.float32, device=colours.device)
    else:
        base = torch.from_numpy(np.ascontiguousarray(view)).to(colours.device).float()
    a = opacity[..., None]
    mixed = (1 - a) * base + a * colours.float()
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
