"""Transformation robustness (Lucid's "standard transforms"): pad, jitter, scale, rotate.

Each batch element gets its own random transform, drawn from a seeded ``torch.Generator``;
the whole batch is warped by one ``grid_sample`` call. Inputs and outputs are (N, 3, H, W)
RGB in [0, 1]; padding is mid-grey.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TransformSettings:
    pad: int = 12  # grey border added first, pixels
    jitter: int = 8  # max translation, pixels (applied with the affine warp)
    scale: tuple[float, float] = (0.9, 1.1)  # zoom range
    degrees: float = 10.0  # max rotation either way
    final_jitter: int = 4  # a last integer crop offset, as in Lucid


def pad_grey(x: torch.Tensor, pad: int, value: float = 0.5) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H + 2 pad, W + 2 pad) with a constant border."""
    return F.pad(x, (pad, pad, pad, pad), value=value) if pad else x


def affine_warp(x: torch.Tensor, scale: torch.Tensor, degrees: torch.Tensor, shift: torch.Tensor,
                fill: float = 0.5) -> torch.Tensor:
    """Zoom by ``scale`` (N,), rotate by ``degrees`` (N,) about the centre and translate by ``shift``
    (N, 2) pixels (x, y); output keeps the input size. Outside pixels become ``fill``.
    With scale 1, degrees 0 and integer shifts this is an exact pixel shift."""
    n, _, h, w = x.shape
    theta = torch.deg2rad(degrees.to(x))
    cos, sin = torch.cos(theta) / scale.to(x), torch.sin(theta) / scale.to(x)
    # affine_grid maps output coords (normalised to [-1, 1]) to input coords; the inverse of the
    # forward transform, so zoom in by s means sampling at coords / s.
    mat = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    mat[:, 0, 0], mat[:, 0, 1] = cos, -sin * h / w
    mat[:, 1, 0], mat[:, 1, 1] = sin * w / h, cos
    mat[:, 0, 2] = -2.0 * shift[:, 0].to(x) / w
    mat[:, 1, 2] = -2.0 * shift[:, 1].to(x) / h
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    # Sample x - fill with zero padding, then add fill back: a grey (not black) outside.
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def crop_offset(x: torch.Tensor, d: int, dy: int, dx: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H - d, W - d), the window starting at (dy, dx), 0 <= dy, dx <= d."""
    if d == 0:
        return x
    h, w = x.shape[-2:]
    return x[..., dy : dy + h - d, dx : dx + w - d]


def random_transform(x: torch.Tensor, settings: TransformSettings, generators: list[torch.Generator]) -> torch.Tensor:
    """Pad, then a random affine per element (scale, rotation, integer jitter), then crop the
    ``final_jitter`` margin: (N, C, H, W) -> (N, C, H + 2 pad - final_jitter, same).

    Element n draws only from ``generators[n]``, so its transforms do not depend on the batch.
    Lucid's last random crop by ``final_jitter`` is folded into the jitter (an equal integer shift).
    """
    x = pad_grey(x, settings.pad)
    lo_s, hi_s = settings.scale
    d = settings.final_jitter
    draws = []
    for g in generators:
        u = torch.rand(2, generator=g)
        jit = torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=g)
        fin = torch.randint(0, d + 1, (2,), generator=g) - d // 2
        draws.append(torch.cat([lo_s + (hi_s - lo_s) * u[:1], settings.degrees * (2 * u[1:] - 1), (jit + fin).float()]))
    p = torch.stack(draws)
    x = affine_warp(x, p[:, 0], p[:, 1], p[:, 2:4])
    return crop_offset(x, d, d // 2, d // 2)
