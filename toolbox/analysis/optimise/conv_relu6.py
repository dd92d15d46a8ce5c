"""Convolution + ReLU6 as one operation for the dream's folded network.

Unfused, every MBConv layer costs a convolution, then a separate ReLU6 pass that reads and writes
the whole activation again (forward), and the same again for its mask (backward); on CPU those
passes are memory-bound and cost a fifth of a lite0 dream gradient (scripts/bench_dream.py
"levers": 139 ms unfused, 114 ms fused per 640x480 gradient). Here the forward is oneDNN's
convolution with a hardtanh(0, 6) post-op (the same fused kernel torch.compile emits for CPU),
and the backward is the ReLU6 mask read from the saved output, followed by the input gradient only
(the weights are frozen, so no weight gradient is computed) as a transposed convolution. Where the
caller vouches that nothing else holds the incoming gradient, the mask is applied to it in place
(one full-size allocation fewer).

The fused kernel is used only where it exists and matches: CPU, float32, no autocast, and a
probe at first use compares it with the unfused pair. Everywhere else (CUDA, which runs cuDNN
under bf16 autocast) the plain ``relu6(conv2d(x))`` runs, with the same result.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


def _fused_forward(x, weight, bias, stride, padding, dilation, groups):
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, stride, dilation, groups,
                                                   "hardtanh", [0.0, 6.0], "")


@functools.lru_cache(maxsize=1)
def fused_kernel_available() -> bool:
    """True when oneDNN's conv+hardtanh kernel exists here and equals relu6(conv2d) on a probe."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 9, 9, generator=generator).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(8, 1, 3, 3, generator=generator)
    bias = torch.randn(8, generator=generator)
    try:
        with torch.inference_mode():
            fused = _fused_forward(x, weight, bias, [2, 2], [1, 1], [1, 1], 8)
            plain = F.relu6(F.conv2d(x, weight, bias, 2, 1, 1, 8))
    except (RuntimeError, TypeError):
        return False
    return fused.shape == plain.shape and torch.allclose(fused, plain, rtol=1e-5, atol=1e-5)


class _ConvReLU6Function(torch.autograd.Function):
    """relu6(conv2d(x, weight, bias)) with a gradient for ``x`` only."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, grad_in_place):
        y = _fused_forward(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(weight, y)
        ctx.geometry = (tuple(x.shape[-2:]), stride, padding, dilation, groups, grad_in_place)
        channels_last = y.is_contiguous(memory_format=torch.channels_last)
        ctx.layout = torch.channels_last if channels_last else torch.contiguous_format
        return y

    @staticmethod
    def backward(ctx, grad_y):
        weight, y = ctx.saved_tensors
        in_size, stride, padding, dilation, groups, grad_in_place = ctx.geometry
        # A loss term's gradient can arrive expanded or in the other layout (a dream layer that is
        # a ReLU6 output); one layout throughout keeps the kernels below on their fast paths.
        grad_y = grad_y.contiguous(memory_format=ctx.layout)
        # relu6 passes the gradient where 0 < y < 6; y is the output, so the mask needs no input copy.
        if grad_in_place and grad_y._base is None and grad_y.stride() == y.stride():
            grad_pre = torch.ops.aten.hardtanh_backward.grad_input(grad_y, y, 0.0, 6.0, grad_input=grad_y)
        else:
            grad_pre = torch.ops.aten.hardtanh_backward(grad_y, y, 0.0, 6.0)
        # d conv / d x is the transposed convolution: as exact as convolution_backward, and faster
        # in oneDNN's strided depthwise case (lite0's _blocks.1 at 624x832: 3.8 against 5.1 ms here).
        kernel = weight.shape[-2:]
        output_padding = [in_size[i] - ((y.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                        + dilation[i] * (kernel[i] - 1) + 1) for i in range(2)]
        grad_x = F.conv_transpose2d(grad_pre, weight, None, stride, padding, output_padding, groups, dilation)
        return grad_x, None, None, None, None, None, None, None


class ConvReLU6(nn.Module):
    """A frozen ``nn.Conv2d`` followed by ReLU6, fused on CPU where oneDNN provides the kernel."""

    def __init__(self, conv: nn.Conv2d, fused: bool = True, grad_in_place: bool = False):
        """fused=False: always the plain pair (benchmarks measure the difference).
        grad_in_place: the caller guarantees the output feeds exactly one operation whose input
        gradient is a fresh tensor (a convolution), so the backward may mask that gradient in place."""
        super().__init__()
        self.fused = fused
        self.grad_in_place = grad_in_place
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("ConvReLU6 needs a zero-padded convolution with numeric padding")
        self.conv = conv
        self.geometry = (list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups)

    def _fusable(self, x: torch.Tensor) -> bool:
        return (self.fused and x.device.type == "cpu" and x.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and self.conv.weight.dtype == torch.float32
                and not self.conv.weight.requires_grad and fused_kernel_available())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fusable(x):
            return _ConvReLU6Function.apply(x, self.conv.weight, self.conv.bias, *self.geometry, self.grad_in_place)
        return F.relu6(self.conv(x))
