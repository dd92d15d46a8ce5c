"""What to maximise: one channel of a layer per batch element.

An objective maps the layer output (N, C, H, W) and the channel of each batch element (N,)
to a value per element (N,), which the optimiser makes larger.
"""
from __future__ import annotations

from typing import Literal

import torch

Objective = Literal["centre", "mean"]


def channel_values(act: torch.Tensor, channels: torch.Tensor, objective: Objective = "centre") -> torch.Tensor:
    """(N, C, H, W), (N,) long -> (N,): act[n, channels[n]] at the spatial centre, or its spatial mean.

    The centre is (H // 2, W // 2), the unit whose receptive field is centred on the image.
    A (N, C) output (fully connected layer) is used as is for both objectives.
    """
    rows = torch.arange(act.shape[0], device=act.device)
    channels = channels.to(act.device)
    if act.dim() == 2:
        return act[rows, channels]
    if act.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) or (N, C) activation, got {tuple(act.shape)}")
    picked = act[rows, channels]  # (N, H, W)
    if objective == "centre":
        return picked[:, act.shape[2] // 2, act.shape[3] // 2]
    if objective == "mean":
        return picked.mean(dim=(1, 2))
    raise ValueError(f"objective must be 'centre' or 'mean', not {objective!r}")


def activation_matrix(act: torch.Tensor, channels: torch.Tensor, objective: Objective = "centre") -> torch.Tensor:
    """(N, C, H, W) for N images, (K,) channels -> (N, K): objective of each channel on each image."""
    n = act.shape[0]
    rows = []
    for k in channels.tolist():
        rows.append(channel_values(act, torch.full((n,), k, dtype=torch.long), objective))
    return torch.stack(rows, dim=1)
