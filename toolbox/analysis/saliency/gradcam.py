"""Grad-CAM (Selvaraju et al. 2017) at any layer, and guided Grad-CAM.

Grad-CAM only differentiates the network after its layer: the graph is cut there, so it costs
about one forward pass plus the backward of the head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolbox.analysis.saliency.backprop import backprop
from toolbox.analysis.saliency.targets import Target


def gradcam_from(activation: torch.Tensor, gradient: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """(N, C, h, w) activation and d score / d activation -> (N, h, w) Grad-CAM:
    sum over channels of activation times the channel's mean gradient, then ReLU."""
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activation).sum(dim=1)
    return cam.clamp_min(0) if relu else cam


def gradcam_map(model: nn.Module, x: torch.Tensor, target: Target, layer: str, relu: bool = True) -> torch.Tensor:
    """(h, w) Grad-CAM at ``layer``'s resolution, unnormalised, >= 0 (signed with relu=False);
    equals captum LayerGradCam(relu_attributions=relu)."""
    result = backprop(model, x, target, input_rule=None, layer=layer)
    return gradcam_from(result.activations[layer], result.layer_gradient, relu)[0]


def guided_gradcam_map(model: nn.Module, x: torch.Tensor, target: Target, layer: str,
                       interpolate: str = "nearest") -> torch.Tensor:
    """(3, H, W) guided backprop times Grad-CAM upsampled to the input (``interpolate`` mode,
    nearest as captum GuidedGradCam). One forward, then a plain backward of the head for
    Grad-CAM and a guided backward for the input."""
    result = backprop(model, x, target, input_rule="guided", layer=layer, layer_rule="plain")
    cam = gradcam_from(result.activations[layer], result.layer_gradient)[:, None]
    kwargs = {} if interpolate == "nearest" else {"align_corners": False}
    cam = F.interpolate(cam, size=x.shape[-2:], mode=interpolate, **kwargs)
    return (result.input_gradient * cam)[0]
