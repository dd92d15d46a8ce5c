"""Model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Re-initialise the network's layers from the top (logits) down, cumulatively, and measure how much
each saliency map still resembles the map of the trained model. A method that explains the model
must change when the model's weights are destroyed; one that stays the same is an edge detector.
Work happens on a deep copy: the caller's model is untouched.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from scipy.stats import spearmanr
from torch import nn

SaliencyFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two maps of the same shape (ties get their mean rank).
    Constant maps have no ranking: returns 0."""
    a, b = a.detach().flatten().double().cpu().numpy(), b.detach().flatten().double().cpu().numpy()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def randomise_(modules: Sequence[nn.Module], generator: torch.Generator) -> None:
    """Replace every parameter of ``modules`` by Gaussian noise with the parameter tensor's own mean
    and standard deviation (the trained scale is kept, so activations neither explode nor vanish)."""
    with torch.no_grad():
        for module in modules:
            for p in module.parameters(recurse=True):
                std = p.std() if p.numel() > 1 else p.abs()
                p.copy_(p.mean() + std * torch.randn(p.shape, generator=generator).to(p.device, p.dtype))


@dataclass(frozen=True)
class SanityRow:
    randomised: str  # the cascade stage: everything from the top down to and including this
    correlations: dict[str, float]  # method -> Spearman rank correlation with the trained model's map


def cascading_randomisation(model: nn.Module, x: torch.Tensor, stages: Sequence[tuple[str, Sequence[str]]],
                            methods: dict[str, SaliencyFn], seed: int = 0) -> list[SanityRow]:
    """For each cumulative stage (label, [dotted module names]) from the top down, the rank
    correlation of each method's map (methods: name -> fn(module, x) -> map >= 0) with the map of
    the original model. Runs on a deep copy."""
    generator = torch.Generator().manual_seed(seed)
    original = {name: fn(model, x) for name, fn in methods.items()}
    randomised = copy.deepcopy(model)
    rows = []
    for label, names in stages:
        randomise_([randomised.get_submodule(n) for n in names], generator)
        rows.append(SanityRow(label, {name: rank_correlation(fn(randomised, x), original[name])
                                      for name, fn in methods.items()}))
    return rows


def strided_stages(stages: Sequence[tuple[str, Sequence[str]]], stride: int) -> list[tuple[str, list[str]]]:
    """Every ``stride``-th cumulative stage and the last, each merged with the stages skipped before
    it, so that the randomisation still reaches everything above the row's label."""
    kept, pending = [], []
    for i, (label, names) in enumerate(stages):
        pending += names
        if i % stride == 0 or i == len(stages) - 1:
            kept.append((label, pending))
            pending = []
    return kept


def lite0_cascade(module: nn.Module) -> list[tuple[str, list[str]]]:
    """EfficientNet-Lite0's cascade, logits first: fc, head conv, then MBConv blocks 15 down to 0."""
    stages = [("_fc", ["_fc"]), ("_conv_head", ["_conv_head", "_bn1"])]
    blocks = len(module._blocks)
    stages += [(f"_blocks.{i}", [f"_blocks.{i}"]) for i in reversed(range(blocks))]
    stages.append(("_conv_stem", ["_conv_stem", "_bn0"]))
    return stages
