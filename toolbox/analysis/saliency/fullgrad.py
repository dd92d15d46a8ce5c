"""FullGrad (Srinivas & Fleuret 2019): input-gradient x input plus bias-gradient x bias at every layer.

    map = sum_c s(|x_c g_c|) + sum_layers sum_c s(up(|b_c G_c|))

over the input's colour channels and every 2-D convolution with a bias and every BatchNorm2d
(whose bias is beta - mean gamma / sqrt(var + eps)), with G the target score's gradient at that
layer's output, s a per-channel min-max scaling ((m - min) / (max - min + 1e-7)) and up a bilinear
resize to the input. That is pytorch-grad-cam's FullGrad, layer selection and scaling included.
One forward and one backward give every gradient at once.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from toolbox.analysis.saliency.backprop import _LayerTaps, input_gradients_only
from toolbox.analysis.saliency.targets import Target, resolve_top1, target_scores


def bias_layers(model: nn.Module) -> dict[str, torch.Tensor]:
    """{dotted name: (C,) effective bias} of every Conv2d with a bias and every BatchNorm2d."""
    biases = {}
    for name, m in model.named_modules():
        if type(m) is nn.Conv2d and m.bias is not None:
            biases[name] = m.bias.detach()
        elif type(m) is nn.BatchNorm2d and m.bias is not None:
            biases[name] = (m.bias - m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps)).detach()
    return biases


def scaled_channel_sum(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) -> (N, H, W): each channel min-max scaled (eps 1e-7) and resized bilinearly,
    summed over channels. The resize is linear, so the channels are summed first and resized once."""
    m = m - m.amin(dim=(2, 3), keepdim=True)
    m = (m / (1e-7 + m.amax(dim=(2, 3), keepdim=True))).sum(dim=1, keepdim=True)
    if m.shape[-2:] != size:
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    return m[:, 0]


def fullgrad_pass(model: nn.Module, x: torch.Tensor, target: Target, capture=()):
    """One forward of ``x`` (1, 3, H, W), one backward: (map (H, W) >= 0 unnormalised, logits
    (1, classes), {captured layer: activation}, the explained class or None)."""
    biases = bias_layers(model)
    names = list(biases)
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(input_gradients_only(model))
        x_in = x.detach().clone().requires_grad_()
        unit = [target.layer] if hasattr(target, "layer") else []
        with _LayerTaps(model, [*names, *unit], capture, None) as taps:
            logits = model(x_in)
        target = resolve_top1(target, logits.detach())
        objective = target_scores(target, logits, taps.stored).sum()
        grads = torch.autograd.grad(objective, [x_in, *(taps.stored[n] for n in names)], allow_unused=True)
    size = tuple(x.shape[-2:])
    total = scaled_channel_sum((grads[0] * x).abs(), size)
    for name, g in zip(names, grads[1:]):
        if g is not None:
            total = total + scaled_channel_sum((biases[name][None, :, None, None] * g).abs(), size)
    class_index = getattr(target, "index", None)
    activations = {n: taps.stored[n].detach() for n in capture}
    return total[0].detach(), logits.detach(), activations, class_index


def fullgrad_map(model: nn.Module, x: torch.Tensor, target: Target) -> torch.Tensor:
    """(H, W) FullGrad map of ``x`` (1, 3, H, W), >= 0, before pytorch-grad-cam's final min-max scaling."""
    return fullgrad_pass(model, x, target)[0]
