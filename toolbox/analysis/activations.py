"""Numbers read off one forward pass: predictions, per-channel and per-layer activation statistics."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


def top_predictions(logits: torch.Tensor, categories, k: int = 5) -> list[Prediction]:
    """(num_classes,) logits -> the k most probable classes, best first."""
    probs = logits.float().softmax(dim=-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return [Prediction(int(i), categories[int(i)] if int(i) < len(categories) else str(int(i)), float(v))
            for v, i in zip(values.tolist(), indices.tolist())]


def channel_means(act: torch.Tensor) -> torch.Tensor:
    """(C, H, W) -> (C,) mean activation of each channel."""
    return act.float().mean(dim=(-2, -1))


def most_active_channels(act: torch.Tensor, k: int = 5) -> list[tuple[int, float]]:
    """(C, H, W) -> [(channel, mean activation)] for the k channels with the highest mean."""
    means = channel_means(act)
    values, indices = means.topk(min(k, means.numel()))
    return list(zip(indices.tolist(), values.tolist()))


def layer_means(activations: dict[str, torch.Tensor]) -> dict[str, float]:
    """{layer: (C, H, W)} -> {layer: mean activation over all its units}."""
    return {name: float(act.float().mean()) for name, act in activations.items()}
