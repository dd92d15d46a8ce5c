"""Pieces every job shares: building the model from the config, picking the layer, status text."""
from __future__ import annotations

import torch

from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.models.registry import LoadedModel, load_model, resolve_device


def model_from_config(config: Config) -> LoadedModel:
    m = config.model
    return load_model(m.name, weights=m.weights, device=resolve_device(m.device), channels_last=m.channels_last,
                      labels=m.labels, preprocess=m.preprocess)


def default_layer(model: LoadedModel) -> str:
    """The middle visualisable layer: neither edges nor whole objects, the most telling mosaic."""
    return model.layers[len(model.layers) // 2]


def chosen_layer(model: LoadedModel, requested: str | None) -> str:
    if requested is None:
        return default_layer(model)
    if requested.isdigit() and int(requested) < len(model.layers):
        return model.layers[int(requested)]
    model.check_layer(requested)
    return requested


def layers_to_capture(model: LoadedModel, layer: str) -> list[str]:
    """The visualisable layers plus the chosen one if it is not among them."""
    return model.layers if layer in model.layers else [*model.layers, layer]


def describe_layer(model: LoadedModel, layer: str, act: torch.Tensor) -> str:
    position = f"{model.layers.index(layer) + 1}/{len(model.layers)} " if layer in model.layers else ""
    return f"layer {position}{layer} {tuple(act.shape)}"


def require_4d(layer: str, act: torch.Tensor) -> None:
    if act.dim() != 3:
        raise DeepvisError(
            f"layer '{layer}' outputs shape {tuple(act.shape)}, not a (C, H, W) feature map: pick a convolutional layer "
            "(deepvis layers)"
        )
