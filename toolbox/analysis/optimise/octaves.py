"""Octave pyramids, both families of the references (reference §2.5).

- "detail" (google notebook, TF1, Keras): a pyramid of the *original*; at each level the dream
  so far (the detail d = x - base) is upsampled and added to that level's original, so the
  photo's own high frequencies come back at every octave. ``octaves`` levels, the largest is the
  input size; each smaller level is the previous one divided by ``scale`` and rounded (as
  scipy.ndimage.zoom does).
- "resize" (TF2 tutorial, gordic): the dreamed image itself is resized to each level; levels are
  ``int(base * scale**n)`` for n in ``range(first, last + 1)``, which for the tutorial's
  range(-2, 3) runs past the input (1.69x) and is resized back to the input at the end.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

FAMILIES = ("detail", "resize")


def detail_sizes(height: int, width: int, octaves: int, scale: float) -> list[tuple[int, int]]:
    """(H, W) of each level, smallest first; the last is (height, width)."""
    sizes = [(height, width)]
    for _ in range(octaves - 1):
        h, w = sizes[-1]
        sizes.append((max(1, round(h / scale)), max(1, round(w / scale))))
    return sizes[::-1]


def resize_sizes(height: int, width: int, first: int, last: int, scale: float) -> list[tuple[int, int]]:
    """(H, W) = int(base * scale**n) for n = first..last (TF2 tutorial's truncation)."""
    return [(max(1, int(height * scale**n)), max(1, int(width * scale**n))) for n in range(first, last + 1)]


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size), bilinear (both references use linear interpolation)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def detail_pyramid(image: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The original at every level, each level downsampled from the next larger one."""
    levels = [image]
    for size in reversed(sizes[:-1]):
        levels.append(resize(levels[-1], size))
    return levels[::-1]
