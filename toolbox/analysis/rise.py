"""RISE saliency (Petsiuk et al. 2018): the class probability under many random masks, averaged
per pixel. Gradient-free, so it runs through any batch forward, onnxruntime included.

saliency(pixel) = sum_i P(target | x * M_i) * M_i(pixel) / (N * p)

Masks are coarse random grids (``cells`` x ``cells``, each cell kept with probability ``p``),
upsampled bilinearly and shifted by a random sub-cell offset so that cell edges do not line up.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F


def rise_masks(count: int, size: int, cells: int = 7, p: float = 0.5, seed: int = 0,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """(count, 1, size, size) float32 masks in [0, 1], the same for the same arguments."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], not {p}")
    generator = torch.Generator().manual_seed(seed)
    cell = math.ceil(size / cells)
    grid = (torch.rand(count, 1, cells, cells, generator=generator) < p).float()
    up = F.interpolate(grid, size=((cells + 1) * cell,) * 2, mode="bilinear", align_corners=False)
    shifts = torch.randint(0, cell, (count, 2), generator=generator)
    masks = torch.stack([up[i, :, dy:dy + size, dx:dx + size] for i, (dy, dx) in enumerate(shifts.tolist())])
    return masks.clamp_(0.0, 1.0).to(device)  # bilinear rounding can overshoot 1 by an ulp


def rise_saliency(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: int | None,
                  masks: torch.Tensor | None = None, count: int = 1000, cells: int = 7, p: float = 0.5,
                  baseline: float = 0.0, batch_size: int = 64, seed: int = 0,
                  progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """(H, W) float32 RISE map for class ``target``: roughly the target's probability when that
    pixel is visible, in [0, 1] (can slightly exceed 1 for small ``count``).

    forward: (B, 3, H, W) model input -> (B, num_classes) logits, without gradients.
    x: (1, 3, H, W) model input. target: class index, or None for the top-1 class of x. masks: (N, 1, H, W) in [0, 1], default ``rise_masks(count, H,
    cells, p, seed)``. Hidden pixels take ``baseline`` (0.0: the normalised mean colour).
    Masked images go through ``forward`` ``batch_size`` at a time; ``progress`` gets the fraction of
    masks done after each batch.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be (1, 3, H, W), not {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if masks is None:
        masks = rise_masks(count, height, cells, p, seed)
    masks = masks.to(x.device, torch.float32)
    if target is None:
        with torch.inference_mode():
            target = int(forward(x)[0].argmax())
    total = torch.zeros(height, width, device=x.device)
    with torch.inference_mode():
        for start in range(0, len(masks), batch_size):
            batch = masks[start:start + batch_size]
            masked = x * batch + baseline * (1.0 - batch)
            probs = forward(masked).float().softmax(dim=1)[:, target].to(x.device)
            total += (probs.view(-1, 1, 1) * batch[:, 0]).sum(dim=0)
            if progress is not None:
                progress(min(start + batch_size, len(masks)) / len(masks))
    return total / (len(masks) * p)
