"""LoadedModel: a classifier as deepvis uses it (module or ONNX graph, preprocessing, names, layers)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from toolbox.models.layers import LayerInfo, layer_table
from toolbox.models.preprocess import Preprocess


@dataclass
class LoadedModel:
    """A classifier ready for visualisation: eval mode, parameters frozen, on its device."""

    name: str
    module: nn.Module | None  # None for a user's ONNX graph (then ``onnx`` is set)
    preprocess: Preprocess
    categories: tuple[str, ...]
    layers: list[str]  # visualisable layers, shallow to deep
    weights: str  # where the weights came from: a file path, or "random"
    weights_id: str  # short content hash of the weights (cache key)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    channels_last: bool = False
    onnx: Any = None  # toolbox.models.onnx_user.OnnxGraph for a user's .onnx file, else None

    def layer_infos(self, names: list[str] | None = None) -> list[LayerInfo]:
        if self.onnx is not None:
            return self.onnx.layer_infos(names)
        x = torch.zeros(1, 3, self.preprocess.size, self.preprocess.size, device=self.device)
        return layer_table(self.module, self._layout(x), self.layers if names is None else names)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def input_tensor(self, views) -> torch.Tensor:
        """Model views (uint8 BGR, preprocess.size square) -> input tensor on this model's device."""
        return self._layout(self.preprocess.to_tensor(views, self.device))

    def check_layer(self, name: str) -> str:
        from toolbox.models.capture import resolve_module

        if self.onnx is not None:
            return self.onnx.check_layer(name)
        resolve_module(self.module, name)
        return name
