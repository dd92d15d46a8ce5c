"""Input-gradient maps: vanilla gradient, gradient x input, guided backprop, deconvnet.

All take ``x`` (1, 3, H, W) as the model expects it and return (3, H, W) float32 signed maps in
model-input units (reduce to (H, W) with toolbox.render.heatmap). Each is one forward and one
backward pass (noise_tunnel.py averages them over noisy copies).
"""
from __future__ import annotations

import torch
from torch import nn

from toolbox.analysis.saliency.backprop import backprop
from toolbox.analysis.saliency.targets import Target


def gradient_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """d score / d x (Simonyan et al. 2014), signed; equals captum Saliency(abs=False)."""
    return backprop(model, x, target).input_gradient[0]


def gradient_x_input_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """x * d score / d x; equals captum InputXGradient."""
    return (backprop(model, x, target).input_gradient * x)[0]


def guided_backprop_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015), ReLU6 and functional ReLU included."""
    return backprop(model, x, target, input_rule="guided").input_gradient[0]


def deconvnet_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """Deconvnet backward rule (Zeiler & Fergus 2014), ReLU6 and functional ReLU included.

    On a network without max-pooling (lite0, MobileNets) the rule keeps almost nothing of the image:
    the backward pass rectifies the signal instead of using the forward switches, so only the ReLU6
    saturation gates depend on the input, and the map is the network's own pattern: on lite0, vertical
    stripes over the left third plus a stride grid, where the stride-2 convolutions sample. The map of
    the mirrored cat matches the cat's in place (correlation 0.7), not mirrored (-0.1), where guided
    backprop follows the image (Mahendran & Vedaldi 2016 describe the same input independence).
    """
    return backprop(model, x, target, input_rule="deconv").input_gradient[0]
