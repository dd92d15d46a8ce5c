"""Which layers of a model are worth looking at, and what each one outputs."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerInfo:
    name: str  # dotted module path, e.g. "_blocks.4" or "layer3.1"
    type: str  # module class name
    shape: tuple[int, ...]  # output shape for one image, without the batch dimension

    @property
    def channels(self) -> int:
        return self.shape[0] if self.shape else 0


def _numbered_children(model: nn.Module, parent: str) -> list[str]:
    return [f"{parent}.{name}" for name, _ in model.get_submodule(parent).named_children()]


def visualisable_layers(model_name: str, model: nn.Module) -> list[str]:
    """10-20 meaningful layers (stem, blocks or stages, head) instead of every module."""
    if model_name == "lite0":
        return ["_relu0", *_numbered_children(model, "_blocks"), "_relu1"]
    if model_name.startswith(("resnet", "resnext", "wide_resnet")):
        blocks = [b for stage in ("layer1", "layer2", "layer3", "layer4") for b in _numbered_children(model, stage)]
        return ["relu", *blocks]
    if model_name.startswith(("vgg", "alexnet")):
        return [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
    if model_name == "googlenet":
        return ["conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b",
                "inception4c", "inception4d", "inception4e", "inception5a", "inception5b"]
    if model_name == "inception_v3":
        return [n for n, _ in model.named_children() if n.startswith(("Conv2d", "Mixed"))]
    if hasattr(model, "features") and isinstance(model.features, nn.Sequential):
        return _numbered_children(model, "features")
    # Fallback: every convolution's direct parent container that is a top-level child.
    return [n for n, m in model.named_children() if any(isinstance(s, nn.Conv2d) for s in m.modules())]


def layer_table(model: nn.Module, x: torch.Tensor, names: list[str] | None = None) -> list[LayerInfo]:
    """Output shape of each named module (all leaf and container modules if names is None),
    measured by a real forward pass on ``x`` (one image)."""
    wanted = names if names is not None else [n for n, _ in model.named_modules() if n]
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name in wanted:
        module = model.get_submodule(name)

        def record(mod, inputs, output, name=name):
            out = output if isinstance(output, torch.Tensor) else output[0] if isinstance(output, (tuple, list)) else None
            if isinstance(out, torch.Tensor) and name not in shapes:
                shapes[name] = tuple(out.shape[1:])

        handles.append(module.register_forward_hook(record))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [LayerInfo(n, type(model.get_submodule(n)).__name__, shapes[n]) for n in wanted if n in shapes]
