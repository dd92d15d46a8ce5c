"""A gradient oracle for objectives on a few layers' activations and on the picture itself.

``FeatureGradient(model, layers, objective)(rgb)`` -> (d objective / d rgb, objective) for a
(1, 3, H, W) RGB [0, 1] picture, where ``objective(acts, rgb)`` is a scalar to maximise and acts
maps each layer to its (1, C, h, w) fp32 activation (or (1, K) logits). The network is cut at
the deepest layer (optimise/network.py: BN folded, fused conv+ReLU6 on lite0); on CUDA the
forward runs in bf16 (optimise/device.py). Untiled: Gram and feature-distance objectives are not
sums over positions, so the tiling of optimise/tiling.py does not apply to them; out of memory
propagates to the loop, which continues at a smaller working size (optimise/loop.py).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from toolbox.analysis.optimise.device import InputMap, autocast
from toolbox.analysis.optimise.network import CutNetwork
from toolbox.models.registry import LoadedModel

FeatureObjective = Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


class FeatureGradient:
    def __init__(self, model: LoadedModel, layers: Sequence[str], objective: FeatureObjective | None = None,
                 channels_last: bool = True):
        self.model = model
        self.device = model.device
        self.net = CutNetwork(model, list(dict.fromkeys(layers)))
        self.input_map = InputMap(model, channels_last)
        self.objective = objective

    def features(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """(1, 3, H, W) RGB [0, 1] -> {layer: fp32 activation}, no gradient (targets, measurements)."""
        with torch.no_grad(), autocast(self.device):
            acts = self.net(self.input_map.input(rgb.to(self.device)).detach())
        return {n: a.float() for n, a in acts.items()}

    def __call__(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rgb = rgb.detach().requires_grad_(True)
        inp = self.input_map.input(rgb)
        with autocast(self.device):
            acts = self.net(inp)
        value = self.objective({n: a.float() for n, a in acts.items()}, rgb)
        g_inp, g_rgb = torch.autograd.grad(value, [inp, rgb], allow_unused=True)
        grad = self.input_map.rgb_gradient(g_inp)
        if g_rgb is not None:
            grad += g_rgb
        return grad, value.detach()

    def close(self) -> None:
        self.net.close()

    def __enter__(self) -> "FeatureGradient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
