"""One vector per frame: a layer's activation pooled over its spatial positions."""
from __future__ import annotations

import torch

POOLS = ("mean", "max")


def pooled_features(activations: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """(N, C, H, W) or (N, C) activations -> (N, C) float32 on the same device.

    mean: the average over the H*W positions (the descriptor of "what is in the frame");
    max: the strongest response of each channel anywhere in the frame.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, not {pool!r}")
    x = activations.float()
    if x.dim() == 2:
        return x
    x = x.flatten(2)
    return x.mean(2) if pool == "mean" else x.amax(2)
