"""Layer-wise relevance propagation (Bach et al. 2015) with zennit's rules, on any CNN.

The relevance of the target score is carried back layer by layer: zennit's rule hooks replace the
backward of every convolution and linear layer (Epsilon, ZPlus, AlphaBeta, Flat), activations pass
relevance through unchanged (zennit's ``Pass``: ReLU6, Hardswish and the rest, so a saturated unit
keeps its relevance), and average pooling and residual additions share it in proportion to their
inputs (zennit's ``Norm``). The map is the relevance reaching the input pixels, (3, H, W), signed,
summing to about the target score (``conservation``).

Two canonisations make arbitrary torchvision-style models follow the rules, as zennit's
``ResNetCanonizer`` does for ResNets only:

- BatchNorm folded into the convolution that feeds it. The pairs are found by tracing one forward
  (a BatchNorm whose input tensor *is* a convolution's output), not by module order, so the
  concatenation before a DenseNet layer's BatchNorm is never mistaken for a convolution. (A
  convolution whose output also feeds something else besides its BatchNorm would hand that consumer
  the folded values: no torchvision classifier does this.)
- Residual additions: every ``a + b`` of two same-shaped tensors in the graph (``torch.add``,
  ``+``, ``+=``) is recorded as zennit's ``Sum`` with the ``Norm`` rule,
  R_a = a R / (a + b), R_b = b R / (a + b).

Everything happens inside one forward and one backward (``lrp_rules`` is entered around both);
nothing is left on the model afterwards. In between, the folded weights and zennit's rule hooks act
on every forward of the model, whichever thread runs it: a model that other threads use meanwhile
must not be given to it (the live window gives LRP a private copy). Multiplicative gates
(squeeze-excitation) take the plain gradient, as in zennit.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from toolbox.models.batch_norm_folding import batch_norm_pairs

LRP_COMPOSITES = ("lrp_epsilon", "lrp_epsilon_plus_flat", "lrp_alpha2_beta1")
STABILIZER = 1e-6  # zennit's default for every rule but Epsilon


def make_composite(method: str, epsilon: float = 1e-6, canonizers=()):
    """The zennit composite of ``method``: epsilon on every convolution and linear layer; zennit's
    EpsilonPlusFlat (flat first layer, z+ convolutions, epsilon dense); zennit's EpsilonAlpha2Beta1
    (alpha=2 beta=1 convolutions, epsilon dense). All with zennit's base map (activations pass,
    average pools and sums Norm, batch norms pass)."""
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonPlusFlat, LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.types import Convolution

    canonizers = list(canonizers)
    if method == "lrp_epsilon":
        rule = Epsilon(epsilon=epsilon)
        return LayerMapComposite(layer_map=layer_map_base(STABILIZER) + [(Convolution, rule), (nn.Linear, rule)],
                                 canonizers=canonizers)
    if method == "lrp_epsilon_plus_flat":
        return EpsilonPlusFlat(epsilon=epsilon, canonizers=canonizers)
    if method == "lrp_alpha2_beta1":
        return EpsilonAlpha2Beta1(epsilon=epsilon, canonizers=canonizers)
    raise ValueError(f"unknown LRP composite {method!r}: one of {', '.join(LRP_COMPOSITES)}")


def batch_norm_canonizer(model: nn.Module, x: torch.Tensor):
    """zennit NamedMergeBatchNorm over the traced pairs (None when the model has none)."""
    from zennit.canonizers import NamedMergeBatchNorm

    pairs = batch_norm_pairs(model, x)
    return NamedMergeBatchNorm([((linear,), bn) for linear, bn in pairs]) if pairs else None


class _NormSum(torch.autograd.Function):
    """a + b whose backward shares the incoming relevance in proportion to a and b (zennit's Norm
    rule on its Sum layer, same stabiliser: the sum moved away from 0 by 1e-6 with its sign)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, inplace: bool) -> torch.Tensor:
        ctx.save_for_backward(a.detach().clone() if inplace else a.detach(), b.detach())  # a += b overwrites a
        return a + b

    @staticmethod
    def backward(ctx, relevance: torch.Tensor):
        a, b = ctx.saved_tensors
        total = a + b
        scaled = relevance / (total + STABILIZER * torch.where(total >= 0, 1.0, -1.0))
        return a * scaled, b * scaled, None


_ADDS = {torch.add: False, torch.Tensor.add: False, torch.Tensor.__add__: False, torch.Tensor.__radd__: False,
         torch.Tensor.__iadd__: True, torch.Tensor.add_: True}


class _ResidualSums(TorchFunctionMode):
    """Routes additions of two same-shaped graph tensors through ``_NormSum``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _ADDS and len(args) == 2 and not kwargs:
            a, b = args
            if (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                    and a.requires_grad and b.requires_grad):
                out = _NormSum.apply(a, b, _ADDS[func])
                return a.copy_(out) if _ADDS[func] else out
        return func(*args, **kwargs)


@contextlib.contextmanager
def lrp_rules(model: nn.Module, method: str, x: torch.Tensor, epsilon: float = 1e-6) -> Iterator[None]:
    """Enter around one forward and its backward: the input gradient of the target score is then its
    relevance under ``method`` (see the module docstring). Canonisation and rule hooks are removed
    on exit, the model's parameters restored exactly."""
    canonizer = batch_norm_canonizer(model, x)
    composite = make_composite(method, epsilon, [canonizer] if canonizer is not None else [])
    with composite.context(model), _ResidualSums():
        yield


def lrp_map(model: nn.Module, x: torch.Tensor, target, method: str = "lrp_epsilon_plus_flat",
            epsilon: float = 1e-6) -> torch.Tensor:
    """(3, H, W) relevance of ``x`` (1, 3, H, W) for ``target`` under ``method``; sums to about the
    target score (exactly, as epsilon -> 0, when the model has no biases)."""
    from toolbox.analysis.saliency.backprop import backprop

    return backprop(model, x, target, rule_hooks=lambda: lrp_rules(model, method, x, epsilon),
                    relevance=True).input_gradient[0]
