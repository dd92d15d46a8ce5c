"""BatchNorm folded into the convolution or linear layer that feeds it, for inference copies.

In eval mode a BatchNorm is an affine map per channel, y = (z - mean) * gamma / sqrt(var + eps) + beta,
so it can be merged into the weights and bias of the layer producing z. The pairs are found by
tracing one forward (a BatchNorm whose input tensor *is* a convolution's or linear layer's output),
not by module order, so the concatenation before a DenseNet layer's BatchNorm is never mistaken
for a convolution. ``inference_copy`` gives a folded, channels-last copy of a model for batches of
forwards without gradients (perturbation maps), checked against the unfolded model on the input it
is built for and cached per thread until the model's parameters change.
"""
from __future__ import annotations

import collections
import copy
import threading
import weakref

import torch
from torch import nn

from toolbox.models.module_copy import copy_without_hooks

_PAIRS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
_COPIES = threading.local()  # by_model: WeakKeyDictionary model -> (key, copy), one per thread
_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def batch_norm_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """[(linear or convolution name, batch norm name)] where the batch norm reads that layer's output
    directly, found by tracing one forward of ``x`` (cached per model and input shape). A batch norm
    called on the outputs of several layers is left out."""
    key = (tuple(x.shape[1:]), x.dtype)
    cached = _PAIRS.get(model)
    if cached is not None and cached[0] == key:
        return list(cached[1])
    producers: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    handles = []

    def produced(name):
        def hook(module, inputs, output):
            producers[id(output)] = name
        return hook

    def consumed(name):
        def hook(module, inputs):
            source = producers.get(id(inputs[0]))
            if source is not None:
                pairs.append((source, name))
        return hook

    keep_alive = []  # outputs stay referenced so their ids are not reused during the trace
    try:
        for name, module in model.named_modules():
            if isinstance(module, _LINEAR):
                handles.append(module.register_forward_hook(produced(name)))
                handles.append(module.register_forward_hook(lambda m, i, o: keep_alive.append(o)))
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                handles.append(module.register_forward_pre_hook(consumed(name)))
        with torch.inference_mode():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    feeders = collections.Counter(bn for _, bn in pairs)
    pairs = list(dict.fromkeys(p for p in pairs if feeders[p[1]] == 1))
    _PAIRS[model] = (key, tuple(pairs))
    return pairs


@torch.no_grad()
def fold_batch_norm(layer: nn.Module, norm: nn.modules.batchnorm._BatchNorm) -> None:
    """Merge ``norm`` (eval mode: running statistics) into ``layer`` (a convolution or linear layer,
    output channels first in its weight) in place; ``layer`` then computes what
    ``norm(layer(z))`` did, up to float rounding."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps) if norm.affine else \
        1 / torch.sqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale if norm.affine else -norm.running_mean * scale
    layer.weight.mul_(scale.reshape(-1, *[1] * (layer.weight.dim() - 1)))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(scale)
    layer.bias = nn.Parameter(bias * scale + shift, requires_grad=False)


def _foldable(norm: nn.Module) -> bool:
    """Uses running statistics (eval mode, tracked), so it is one fixed affine map per channel."""
    return not norm.training and norm.track_running_stats and norm.running_mean is not None


def _parameter_state(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place."""
    return tuple((t.data_ptr(), t._version) for t in [*model.parameters(), *model.buffers()])


def folded_copy(model: nn.Module, x: torch.Tensor, channels_last: bool = True) -> nn.Module:
    """A copy of ``model`` (eval mode, without its hooks) with every traced convolution ->
    BatchNorm pair folded and the BatchNorm replaced by ``nn.Identity`` under the same name (so
    activations can still be captured by name), parameters frozen, in channels-last layout when
    ``channels_last`` and the input is 4-D. Falls back to the unfolded copy when the folded one does
    not reproduce its output on ``x`` (a convolution whose output also feeds something other than
    its BatchNorm). Only copies run: ``model`` may be in use by other threads meanwhile."""
    clone = copy_without_hooks(model).eval().requires_grad_(False)
    pairs = [(a, b) for a, b in batch_norm_pairs(clone, x) if _foldable(clone.get_submodule(b))]
    layout = torch.channels_last if channels_last and x.dim() == 4 else torch.contiguous_format
    if pairs:
        folded = copy.deepcopy(clone)
        for layer, norm in pairs:
            fold_batch_norm(folded.get_submodule(layer), folded.get_submodule(norm))
            parent, _, leaf = norm.rpartition(".")
            setattr(folded.get_submodule(parent) if parent else folded, leaf, nn.Identity())
        with torch.inference_mode():
            want, got = clone(x[:1]), folded(x[:1])
        if got.shape == want.shape and torch.allclose(got, want, rtol=1e-3, atol=1e-4 * float(want.abs().max()) + 1e-6):
            clone = folded
    return clone.to(memory_format=layout)


def inference_copy(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """``folded_copy(model, x)``, cached per thread (and freed with it) until the model's
    parameters, its mode or the input's shape, dtype or device change. Each thread gets its own
    copy, so a caller may hook it for the length of a forward (to capture a unit's layer) without
    disturbing another."""
    key = (tuple(x.shape[1:]), x.dtype, x.device, model.training, _parameter_state(model))
    copies = getattr(_COPIES, "by_model", None)
    if copies is None:
        copies = _COPIES.by_model = weakref.WeakKeyDictionary()
    cached = copies.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    built = folded_copy(model, x)
    copies[model] = (key, built)
    return built
