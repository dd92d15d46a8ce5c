"""Activation capture: forward hooks that are always removed, and hooks that act only for the thread
that placed them (the live window runs forwards of one shared model from several threads)."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from toolbox.errors import DeepvisError


def resolve_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path ``name``, or a DeepvisError listing how to find valid names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise DeepvisError(f"unknown layer '{name}': run 'deepvis layers' to list this model's layers") from None


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"layer output of type {type(output).__name__} is not a tensor")


class ActivationCapture:
    """Record the outputs of named layers during forward passes.

    Use as a context manager: hooks are registered on enter and removed on exit, even on error.
    After each forward, ``activations[name]`` holds a clone of that layer's output, so in-place
    ops later in the network (ReLU(inplace=True), residual ``+=``) cannot alter it.
    With ``keep_graph=True`` the stored tensors stay attached to autograd (for gradient views);
    otherwise they are detached.

    With ``gated=True`` only forwards run inside ``recording()`` on the same thread are recorded,
    so background work on the shared model (a dream, a unit image) cannot overwrite the frame's
    activations.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], keep_graph: bool = False, gated: bool = False):
        self.model = model
        self.layers = list(layers)
        self.keep_graph = keep_graph
        self.gated = gated
        self.activations: dict[str, torch.Tensor] = {}
        self._modules = [resolve_module(model, name) for name in self.layers]
        self._handles: list = []
        self._local = threading.local()

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Record the forwards this thread runs inside the block (the gate of ``gated=True``)."""
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False

    def _hook(self, name: str):
        def record(module, inputs, output):
            if self.gated and not getattr(self._local, "on", False):
                return
            tensor = _first_tensor(output)
            self.activations[name] = tensor.clone() if self.keep_graph else tensor.detach().clone()

        return record

    def __enter__(self) -> "ActivationCapture":
        for name, module in zip(self.layers, self._modules):
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def forward_with_activations(model: nn.Module, x: torch.Tensor, layers: Sequence[str]):
    """(logits, {layer: activation}) for one forward pass without gradients; forwards that other
    threads run on the same model meanwhile are neither recorded nor touched."""
    with torch.inference_mode(), ActivationCapture(model, layers, gated=True) as capture, capture.recording():
        logits = model(x)
    return logits, capture.activations


def register_own_forward_hook(module: nn.Module, hook: Callable):
    """``module.register_forward_hook(hook)`` for the calling thread's forwards only: a forward that
    another thread runs on the same module meanwhile passes through untouched. Returns the handle."""
    owner = threading.get_ident()

    def own(mod, inputs, output):
        return hook(mod, inputs, output) if threading.get_ident() == owner else None

    return module.register_forward_hook(own)


def has_hooks(model: nn.Module) -> bool:
    """True if any module still carries a forward, pre-forward or backward hook."""
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or getattr(m, "_backward_pre_hooks", None)
        for m in model.modules()
    )
