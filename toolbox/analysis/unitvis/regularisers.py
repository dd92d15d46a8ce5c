"""The Yosinski et al. (2015) image regularisers, applied to the image between gradient steps.

All act on centred pixels ``x`` (N, 3, H, W) where 0 is mid-grey (see ``PixelImage``) and
return a new tensor; "clipping" a pixel means setting all its colour channels to 0 (grey).
Percentiles are per image, over its H*W pixels, in [0, 100]; 0 disables a clip.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def l2_decay(x: torch.Tensor, decay: float) -> torch.Tensor:
    """r(x) = (1 - decay) x: pulls every pixel towards grey (the prior of the L2 penalty)."""
    return x * (1.0 - decay)


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ceil(3 sigma) (sums to 1)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel, reflect padding; sigma 0 returns x unchanged."""
    if sigma <= 0:
        return x
    k = gaussian_kernel1d(sigma).to(x)
    r = k.numel() // 2
    c = x.shape[1]
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def blur_every(x: torch.Tensor, step: int, every: int, sigma: float) -> torch.Tensor:
    """Blur on steps every-1, 2*every-1, ... (1-based counting: every k-th step); else x."""
    return gaussian_blur(x, sigma) if every > 0 and (step + 1) % every == 0 else x


def _clip_below_percentile(x: torch.Tensor, score: torch.Tensor, percentile: float) -> torch.Tensor:
    """Zero the pixels whose score (N, H, W) is strictly below the per-image percentile."""
    if percentile <= 0:
        return x
    flat = score.flatten(1)
    threshold = torch.quantile(flat, percentile / 100.0, dim=1)  # linear, as np.percentile
    keep = (score >= threshold.view(-1, 1, 1)).unsqueeze(1)
    return x * keep


def clip_small_norm(x: torch.Tensor, percentile: float) -> torch.Tensor:
    """Set to grey the pixels whose colour norm ||x[:, :, i, j]|| is in the lowest ``percentile``."""
    return _clip_below_percentile(x, x.norm(dim=1), percentile)


def clip_small_contribution(x: torch.Tensor, grad: torch.Tensor, percentile: float) -> torch.Tensor:
    """Set to grey the pixels whose contribution |sum_c x * dA/dx| (the first-order change of the
    activation if the pixel went grey) is in the lowest ``percentile``."""
    return _clip_below_percentile(x, (x * grad).sum(dim=1).abs(), percentile)
