"""The network cut at the deepest layer an objective reads: (N, 3, H, W) model input -> {layer: activation}.

Layers past the deepest layer read cost forward FLOPs and change nothing (reference §5), so the
forward stops there. Two ways, same arithmetic:
- lite0 (and any model whose dream layers sit in a top-level ``nn.Sequential`` prefix): a
  truncated ``nn.Sequential`` built from the model's own modules, no hooks at all;
- any other model: forward hooks record the dream layers and the deepest one raises
  ``_StopForward``. The hooks act only for the thread that is dreaming (a thread-local flag), so
  the live app can run its own forward passes on the same module concurrently.
Measured on CPU (scripts/bench_dream.py "cut"): the two are within noise of each other; the
Sequential is kept for lite0 because it carries no hooks.
"""
from __future__ import annotations

import threading
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from toolbox.errors import DeepvisError
from toolbox.models.capture import resolve_module
from toolbox.models.registry import LoadedModel

from toolbox.analysis.optimise.conv_relu6 import ConvReLU6


LOGITS = "logits"  # the layer name that stands for the network's output


class _StopForward(Exception):
    pass


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A frozen copy of ``conv`` with the eval-mode ``bn`` folded into its weight and bias."""
    fused = fuse_conv_bn_eval(conv, bn).requires_grad_(False)
    for hooks in (fused._forward_hooks, fused._forward_pre_hooks, fused._backward_hooks):
        hooks.clear()  # the deep copy took the original's hooks (e.g. another thread's capture)
    return fused


class _FoldedBlock(nn.Module):
    """An MBConvBlock with its BatchNorms folded in, built from new modules only, so hooks that
    others put on the original block (the live app's activation capture) never fire here.
    Each convolution followed by ReLU6 runs as one fused operation (conv_relu6)."""

    def __init__(self, block: nn.Module, fuse: bool = True):
        super().__init__()
        # Both outputs feed exactly one convolution, so their gradients may be masked in place.
        self.expand = ConvReLU6(_folded(block._expand_conv, block._bn0), fuse, True) if block.has_expand else None
        self.depthwise = ConvReLU6(_folded(block._depthwise_conv, block._bn1), fuse, True)
        self.project = _folded(block._project_conv, block._bn2)
        self.has_skip = block.has_skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return y + x if self.has_skip else y


class _Lite0Prefix(nn.Module):
    """Stem + ``_blocks[:depth]`` of an EfficientNetLite0, recording the named outputs.

    fold_bn: use copies with BatchNorm folded into the convolutions (eval mode, so exact up to
    rounding): one op instead of two per conv, forward and backward (reference §8.4). fuse: each
    conv+ReLU6 pair runs as one op too (conv_relu6, CPU). fold_bn=False (benchmarks only) runs
    the model's own block modules.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], fold_bn: bool = True, fuse: bool = True):
        super().__init__()
        index = {"_relu0": -1, **{f"_blocks.{i}": i for i in range(len(model._blocks))}}
        self.wanted = {index[name]: name for name in layers}
        blocks = list(model._blocks)[: max(self.wanted) + 1]
        if fold_bn:
            self.stem = ConvReLU6(_folded(model._conv_stem, model._bn0), fuse)
            blocks = [_FoldedBlock(b, fuse) for b in blocks]
        else:
            self.stem = nn.Sequential(model._conv_stem, model._bn0, model._relu0)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        x = self.stem(x)
        if -1 in self.wanted:
            out[self.wanted[-1]] = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.wanted:
                out[self.wanted[i]] = x
        return out


class _HookedPrefix(nn.Module):
    """Any model: record the named layers with hooks, stop after the deepest one."""

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        super().__init__()
        self.model = model
        self.layers = [name for name in layers if name != LOGITS]
        self.want_logits = LOGITS in layers
        self._local = threading.local()
        self._handles = [resolve_module(model, name).register_forward_hook(self._hook(name)) for name in self.layers]
        self._remaining = len(self.layers)

    def _hook(self, name: str):
        def record(module, inputs, output):
            store = getattr(self._local, "store", None)
            if store is None:  # another thread's forward: not ours
                return
            store[name] = output[0] if isinstance(output, (tuple, list)) else output
            if not self.want_logits and len(store) == len(self.layers):
                raise _StopForward

        return record

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._local.store = {}
        try:
            logits = self.model(x)
            if self.want_logits:
                self._local.store[LOGITS] = logits
        except _StopForward:
            pass
        finally:
            store, self._local.store = self._local.store, None
        missing = [n for n in self.layers if n not in store]
        if missing:
            raise DeepvisError(f"layer '{missing[0]}' did not run in the forward pass: pick another dream layer")
        return store

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class CutNetwork:
    """Callable (N, 3, H, W) model input -> {layer: (N, C, h, w) activation}; ``close()`` removes hooks."""

    def __init__(self, model: LoadedModel, layers: Sequence[str], method: str = "auto", fold_bn: bool = True,
                 fuse: bool = True):
        for name in layers:
            if name != LOGITS:
                model.check_layer(name)
        lite0_ok = model.name == "lite0" and LOGITS not in layers and all(
            n == "_relu0" or n.startswith("_blocks.") for n in layers)
        if method == "auto":
            method = "sequential" if lite0_ok else "hooks"
        if method == "sequential" and not lite0_ok:
            raise ValueError("the sequential cut is only available for lite0 block layers")
        self.method = method
        self.layers = list(layers)
        self.module = (_Lite0Prefix(model.module, layers, fold_bn, fuse) if method == "sequential"
                       else _HookedPrefix(model.module, layers))

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.module(x)

    def close(self) -> None:
        if isinstance(self.module, _HookedPrefix):
            self.module.close()

    def __enter__(self) -> "CutNetwork":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def layer_strides(net: CutNetwork, device: torch.device, probe: int = 256) -> dict[str, int]:
    """Input pixels per activation pixel for each spatial dream layer (1 for logits)."""
    x = torch.zeros(1, 3, probe, probe, device=device)
    with torch.inference_mode():
        acts = net(x)
    return {name: (probe // a.shape[-1] if a.dim() == 4 else 1) for name, a in acts.items()}
