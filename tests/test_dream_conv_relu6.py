"""The fused convolution + ReLU6 of the dream network equals the unfused pair, value and gradient."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolbox.analysis.dream import DreamEngine, preset
from toolbox.analysis.optimise.conv_relu6 import ConvReLU6, fused_kernel_available

# (in channels, out channels, kernel, stride, groups, input height, width): lite0's kinds of
# conv, with odd sizes so that the strided backward needs an output padding.
CASES = [
    (16, 96, 1, 1, 1, 13, 17),  # expand
    (24, 24, 3, 1, 24, 13, 17),  # depthwise
    (24, 24, 3, 2, 24, 13, 17),  # strided depthwise
    (24, 24, 5, 2, 24, 14, 19),  # strided 5x5 depthwise
    (3, 32, 3, 2, 1, 15, 22),  # stem
]


def _conv(cin, cout, k, stride, groups, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups)
    with torch.no_grad():
        conv.weight.mul_(3.0)  # spread the pre-activations over both ReLU6 kinks
    return conv.requires_grad_(False)


def test_the_fused_kernel_is_available_on_this_cpu():
    # Otherwise the tests below compare the plain pair with itself.
    assert fused_kernel_available()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("grad_in_place", [False, True])
def test_fused_equals_relu6_of_conv_in_value_and_input_gradient(case, grad_in_place):
    cin, cout, k, stride, groups, h, w = case
    conv = _conv(cin, cout, k, stride, groups, seed=sum(case))
    fused = ConvReLU6(conv, grad_in_place=grad_in_place)
    x = (2 * torch.randn(2, cin, h, w)).contiguous(memory_format=torch.channels_last)
    x_fused, x_plain = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y_fused, y_plain = fused(x_fused), F.relu6(conv(x_plain))
    assert y_fused.grad_fn is not None and "ConvReLU6" in type(y_fused.grad_fn).__name__
    torch.testing.assert_close(y_fused, y_plain, rtol=1e-5, atol=1e-5)
    # A fresh upstream gradient per call: the in-place mask may overwrite what it is given.
    upstream = torch.randn(y_plain.shape).contiguous(memory_format=torch.channels_last)
    saturated = float(((y_plain <= 0) | (y_plain >= 6)).float().mean())
    assert 0.2 < saturated < 0.8  # both sides of the mask are exercised
    (g_fused,) = torch.autograd.grad(y_fused, x_fused, upstream.clone())
    (g_plain,) = torch.autograd.grad(y_plain, x_plain, upstream.clone())
    torch.testing.assert_close(g_fused, g_plain, rtol=1e-4, atol=1e-4)


def test_unfusable_inputs_take_the_plain_pair():
    conv = _conv(8, 8, 3, 1, 8, seed=0)
    x = torch.randn(1, 8, 9, 9, dtype=torch.float64, requires_grad=True)
    y = ConvReLU6(conv.double())(x)
    assert "ConvReLU6" not in type(y.grad_fn).__name__
    unfused = ConvReLU6(conv.float(), fused=False)(torch.randn(1, 8, 9, 9, requires_grad=True))
    assert "ConvReLU6" not in type(unfused.grad_fn).__name__


def test_dream_gradient_equals_autograd_through_the_untouched_model(lite0):
    # Independent of the dream network: hooks on the model's own modules (BatchNorm unfolded,
    # ReLU6 unfused, the input normalisation inside autograd) and the objective written out.
    layers = ["_relu0", "_blocks.3", "_blocks.6"]
    torch.manual_seed(4)
    rgb = torch.rand(1, 3, 72, 104)
    acts = {}
    handles = [lite0.module.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o))
               for n in layers]
    try:
        x = rgb.clone().requires_grad_(True)
        with torch.enable_grad():
            lite0.module(lite0.preprocess.normalise(x))
            objective = sum(acts[n].mean() for n in layers)
            (expected,) = torch.autograd.grad(objective, x)
    finally:
        for handle in handles:
            handle.remove()
    settings = preset("tf-tutorial").with_layers(layers)
    with DreamEngine(lite0, settings) as engine, torch.enable_grad():
        assert engine.net.method == "sequential"
        got, value = engine.gradient(rgb)
    torch.testing.assert_close(value, objective.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()))
