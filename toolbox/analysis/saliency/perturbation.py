"""Occlusion (Zeiler & Fergus 2014): how much the score drops when a square of the image is
replaced by a baseline. Needs only batched forward passes, so it runs on any backend
(PyTorch, onnxruntime) that maps a batch of inputs to scores.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride`` pixels, the last window cropped at the
    border (captum Occlusion's positions: ceil((size - window) / stride) + 1 windows)."""
    count = math.ceil(max(size - window, 0) / stride) + 1
    return [i * stride for i in range(count)]


@torch.no_grad()
def occlusion(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: int | None,
              window: int = 16, stride: int = 8, baseline: float = 0.0, batch_size: int = 64) -> torch.Tensor:
    """(H, W) occlusion map for one image.

    forward: (B, 3, H, W) model input -> (B, classes) scores; called with at most ``batch_size``
      occluded copies at a time (any backend: torch module, onnxruntime session wrapper).
    x: (1, 3, H, W) model input. target: class index, or None for the top-1 class of x.
    window, stride: square occluder side and step in pixels; all channels are occluded together.
    baseline: occluder value in model-input units.
    Value at a pixel: mean over the windows covering it of score(x) - score(x occluded), as captum
    Occlusion(sliding_window_shapes=(3, window, window), strides=(3, stride, stride)) returns per channel.
    """
    height, width = x.shape[-2:]
    base_scores = forward(x)
    if target is None:
        target = int(base_scores[0].argmax())
    base = base_scores[0, target]
    boxes = [(top, left) for top in window_starts(height, window, stride) for left in window_starts(width, window, stride)]
    total = torch.zeros((height, width), dtype=torch.float32, device=x.device)
    count = torch.zeros((height, width), dtype=torch.float32, device=x.device)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        batch = x.expand(len(chunk), -1, -1, -1).clone()
        for i, (top, left) in enumerate(chunk):
            batch[i, :, top : top + window, left : left + window] = baseline
        drops = base - forward(batch)[:, target].float()
        for drop, (top, left) in zip(drops.tolist(), chunk):
            total[top : top + window, left : left + window] += drop
            count[top : top + window, left : left + window] += 1
    return total / count
