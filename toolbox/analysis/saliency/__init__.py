"""Saliency maps: which input pixels make a class or a unit fire.

One entry point, ``saliency_map(model, x, method, target, layer)``, over the ``METHODS`` registry;
``saliency_pass`` is the live loop's variant that also returns the activations and the per-channel
layer gradients from the same single forward + backward pass.

Maps are raw and signed, in model-input units: (3, H, W) for pixel methods, (h, w) at the layer's
resolution for Grad-CAM, (H, W) for occlusion. toolbox.render.heatmap turns any of them into a picture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from toolbox.analysis.saliency.backprop import backprop
from toolbox.analysis.saliency.gradcam import gradcam_from, gradcam_map, guided_gradcam_map
from toolbox.analysis.saliency.gradients import (deconvnet_map, gradient_map, gradient_x_input_map,
                                                 guided_backprop_map, smoothgrad_map)
from toolbox.analysis.saliency.integrated import integrated_gradients_map
from toolbox.analysis.saliency.perturbation import occlusion
from toolbox.analysis.saliency.targets import ClassTarget, Target, UnitTarget, as_target, target_scores
from toolbox.errors import DeepvisError

__all__ = ["METHODS", "LIVE_CYCLE", "SaliencyMethod", "saliency_map", "saliency_pass", "SaliencyPass",
           "ClassTarget", "UnitTarget", "as_target", "occlusion", "gradcam_map"]


@dataclass(frozen=True)
class SaliencyMethod:
    """name: registry key. needs_layer: takes a layer (Grad-CAM family). expensive: many forward
    passes, so the live loop runs it in the background at a lower rate. input_rule: the rectifier
    rule of its single pass (None when it is not a single-pass gradient method). defaults: options
    used when the caller gives none (cost/quality trade-off for 224-pixel inputs)."""

    name: str
    title: str
    needs_layer: bool = False
    expensive: bool = False
    input_rule: str | None = None
    defaults: tuple[tuple[str, object], ...] = ()


METHODS: dict[str, SaliencyMethod] = {m.name: m for m in (
    SaliencyMethod("gradient", "gradient", input_rule="plain"),
    SaliencyMethod("guided", "guided backprop", input_rule="guided"),
    SaliencyMethod("deconvnet", "deconvnet", input_rule="deconv"),
    SaliencyMethod("gradcam", "Grad-CAM", needs_layer=True),
    SaliencyMethod("guided_gradcam", "guided Grad-CAM", needs_layer=True),
    SaliencyMethod("input_x_gradient", "gradient x input", input_rule="plain"),
    SaliencyMethod("smoothgrad", "SmoothGrad", expensive=True, defaults=(("samples", 16), ("sigma", 0.15))),
    SaliencyMethod("integrated_gradients", "integrated gradients", expensive=True, defaults=(("steps", 32),)),
    SaliencyMethod("occlusion", "occlusion", expensive=True, defaults=(("window", 32), ("stride", 16))),
)}
LIVE_CYCLE = (None, *METHODS)  # the live key's order: off -> gradient -> guided -> deconvnet -> Grad-CAM -> ...


def method_info(name: str) -> SaliencyMethod:
    if name not in METHODS:
        raise DeepvisError(f"unknown saliency method '{name}': choose one of {', '.join(METHODS)}")
    return METHODS[name]


def _module_and_categories(model) -> tuple[nn.Module, Sequence[str], list[str]]:
    """Accept a LoadedModel (categories and default layer known) or a bare nn.Module."""
    if isinstance(model, nn.Module):
        return model, (), []
    if model.module is None:
        raise DeepvisError(f"saliency needs a PyTorch model; {model.name} is an ONNX graph (use --backend torch)")
    return model.module, model.categories, list(model.layers)


def _layer_for(method: SaliencyMethod, layer: str | None, layers: list[str]) -> str | None:
    if not method.needs_layer:
        return layer
    if layer is not None:
        return layer
    if layers:
        return layers[-1]  # the deepest visualisable layer: Grad-CAM's usual choice
    raise DeepvisError(f"{method.title} needs a layer: pass layer='<dotted module name>' (deepvis layers)")


def _score_forward(module: nn.Module, target: Target) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batch -> (B, classes) logits, or (B, 1) unit scores for a unit target (occlusion's forward)."""
    if isinstance(target, ClassTarget):
        return module
    from toolbox.models.capture import ActivationCapture

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with ActivationCapture(module, [target.layer]) as capture:
            logits = module(batch)
        return target_scores(target, logits, capture.activations)[:, None]

    return forward


def saliency_map(model, x: torch.Tensor, method: str, /, target=None, layer: str | None = None,
                 **options) -> torch.Tensor:
    """The ``method`` map of image ``x`` (1, 3, H, W) for ``target`` (see ``as_target``: None for
    top-1, a class index or name, a UnitTarget). model: LoadedModel or nn.Module.
    layer: Grad-CAM's layer (default: the model's deepest visualisable layer).
    options: occlusion window/stride/baseline/batch_size, integrated_gradients steps/method/
    baseline/batch_size, smoothgrad samples/sigma/noise/batch_size, gradcam relu.
    Returns (3, H, W), (H, W) for occlusion, or (h, w) at the layer's resolution for Grad-CAM.
    """
    info = method_info(method)
    module, categories, layers = _module_and_categories(model)
    target = as_target(target, categories)
    layer = _layer_for(info, layer, layers)
    options = {**dict(info.defaults), **options}
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one image (1, 3, H, W), not {tuple(x.shape)}")
    if method == "gradient":
        return gradient_map(module, x, target)
    if method == "input_x_gradient":
        return gradient_x_input_map(module, x, target)
    if method == "guided":
        return guided_backprop_map(module, x, target)
    if method == "deconvnet":
        return deconvnet_map(module, x, target)
    if method == "gradcam":
        return gradcam_map(module, x, target, layer, **options)
    if method == "guided_gradcam":
        return guided_gradcam_map(module, x, target, layer, **options)
    if method == "smoothgrad":
        return smoothgrad_map(module, x, target, **options)
    if method == "integrated_gradients":
        return integrated_gradients_map(module, x, target, **options)
    if method == "occlusion":
        index = target.index if isinstance(target, ClassTarget) else 0
        return occlusion(_score_forward(module, target), x, index, **options)
    raise AssertionError(method)


@dataclass
class SaliencyPass:
    """What one live frame needs from one forward + one backward pass.

    map: the method's map as ``saliency_map`` returns it. logits: (classes,).
    activations: {layer: (C, h, w)} detached, for the mosaic.
    layer_gradient: (C, h, w) d score / d activation at ``layer`` under the method's rule (the
    Deep Visualization Toolbox's "back diffs" mosaic), or None.
    class_index: the class explained (None for unit targets).
    """

    map: torch.Tensor
    logits: torch.Tensor
    activations: dict[str, torch.Tensor]
    layer_gradient: torch.Tensor | None
    class_index: int | None


def saliency_pass(model, x: torch.Tensor, method: str, target=None, layer: str | None = None,
                  capture: Sequence[str] = ()) -> SaliencyPass:
    """Live-loop entry point for the single-pass methods (gradient, guided, deconvnet,
    input_x_gradient, gradcam, guided_gradcam): one forward pass of ``x`` (1, 3, H, W) that also
    captures ``capture`` layers for the mosaic, and one backward pass (guided Grad-CAM: plus a
    backward of the head) giving both the map and the per-channel gradient at ``layer``.
    Expensive methods are refused: run ``saliency_map`` for them in a background thread.
    """
    info = method_info(method)
    if info.expensive:
        raise DeepvisError(f"{info.title} is a background method: call saliency_map for it")
    module, categories, layers = _module_and_categories(model)
    target = as_target(target, categories)
    layer = _layer_for(info, layer, layers)
    capture = [c for c in capture if c != layer]
    if info.needs_layer:
        input_rule = "guided" if method == "guided_gradcam" else None
        result = backprop(module, x, target, input_rule=input_rule, layer=layer, layer_rule="plain", capture=capture)
        cam = gradcam_from(result.activations[layer], result.layer_gradient)
        if method == "gradcam":
            saliency = cam[0]
        else:
            up = torch.nn.functional.interpolate(cam[:, None], size=x.shape[-2:], mode="nearest")
            saliency = (result.input_gradient * up)[0]
    else:
        result = backprop(module, x, target, input_rule=info.input_rule, layer=layer, capture=capture)
        saliency = result.input_gradient[0] * (x[0] if method == "input_x_gradient" else 1)
    return SaliencyPass(
        map=saliency,
        logits=result.logits[0],
        activations={name: act[0] for name, act in result.activations.items()},
        layer_gradient=None if result.layer_gradient is None else result.layer_gradient[0],
        class_index=None if result.class_index is None else int(result.class_index[0]),
    )
