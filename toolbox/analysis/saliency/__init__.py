"""Saliency maps: which input pixels make a class or a unit fire.

One entry point, ``saliency_map(model, x, method, target, layer)``, over the ``METHODS`` registry;
``saliency_pass`` is the live loop's variant that also returns the activations and the per-channel
layer gradient from the same single forward + backward pass.

One module per family: gradients.py (input gradients and their rectifier rules), cams.py (gradient
CAMs and Eigen-CAM from one layer's activation and gradient), lrp.py (relevance propagation),
fullgrad.py, perturbation.py (occlusion, Score-CAM, Ablation-CAM), noise_tunnel.py (SmoothGrad,
SquareGrad, VarGrad of any single-pass method), integrated.py; metrics.py scores any map's
faithfulness.

Maps are raw (unnormalised) in model-input units: (3, H, W) signed for pixel methods, (h, w) >= 0
at the layer's resolution for the CAMs, (H, W) for occlusion and FullGrad.
toolbox.render.heatmap turns any of them into a picture.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from toolbox.analysis.saliency.backprop import backprop
from toolbox.analysis.saliency.cams import (LAYER_CAMS, cam_from, gradcam_from, gradcam_map, guided_gradcam_map,
                                           layer_cam_map, require_spatial)
from toolbox.analysis.saliency.fullgrad import fullgrad_pass
from toolbox.analysis.saliency.gradients import deconvnet_map, gradient_map, gradient_x_input_map, guided_backprop_map
from toolbox.analysis.saliency.integrated import integrated_gradients_map
from toolbox.analysis.saliency.lrp import LRP_COMPOSITES, lrp_map, lrp_rules
from toolbox.analysis.saliency.noise_tunnel import NOISE_TUNNELS, noise_tunnel_map
from toolbox.analysis.saliency.perturbation import ablationcam_map, occlusion, scorecam_map
from toolbox.analysis.saliency.targets import (ClassTarget, Target, UnitTarget, as_target, resolve_top1,
                                               target_scores_of)
from toolbox.errors import DeepvisError
from toolbox.models.batch_norm_folding import inference_copy

__all__ = ["METHODS", "LIVE_CYCLE", "SaliencyMethod", "saliency_map", "saliency_pass", "SaliencyPass",
           "ClassTarget", "UnitTarget", "as_target", "occlusion", "gradcam_map"]


@dataclass(frozen=True)
class SaliencyMethod:
    """name: registry key. title: short display name. description: one line saying what the map is.
    family: the module it lives in. needs_layer: reads one layer (the CAMs). expensive: many forward
    passes, so the live loop runs it in the background. input_rule: the rectifier rule of its single
    pass (None when it is not a plain input-gradient method). defaults: options used when the caller
    gives none (cost/quality trade-off for 224-pixel inputs)."""

    name: str
    title: str
    description: str
    family: str
    needs_layer: bool = False
    expensive: bool = False
    input_rule: str | None = None
    defaults: tuple[tuple[str, object], ...] = ()


_NOISE = (("samples", 16), ("sigma", 0.15), ("base", "gradient"))

METHODS: dict[str, SaliencyMethod] = {m.name: m for m in (
    SaliencyMethod("gradient", "gradient", "d score / d pixel (Simonyan et al. 2014)", "gradients", input_rule="plain"),
    SaliencyMethod("guided", "guided backprop", "gradient with negative signals stopped at every ReLU "
                   "(Springenberg et al. 2015)", "gradients", input_rule="guided"),
    SaliencyMethod("deconvnet", "deconvnet", "backward pass that rectifies the signal, not the forward switch "
                   "(Zeiler & Fergus 2014)", "gradients", input_rule="deconv"),
    SaliencyMethod("gradcam", "Grad-CAM", "layer channels weighted by their mean gradient (Selvaraju et al. 2017)",
                   "cams", needs_layer=True),
    SaliencyMethod("guided_gradcam", "guided Grad-CAM", "guided backprop times the upsampled Grad-CAM", "cams",
                   needs_layer=True),
    SaliencyMethod("gradcam_plus_plus", "Grad-CAM++", "channels weighted by positive gradients with "
                   "second-order pixel weights (Chattopadhay et al. 2018)", "cams", needs_layer=True),
    SaliencyMethod("xgradcam", "XGrad-CAM", "channels weighted by activation-normalised gradient x activation "
                   "(Fu et al. 2020)", "cams", needs_layer=True),
    SaliencyMethod("layercam", "LayerCAM", "activation times positive gradient, per position (Jiang et al. 2021)",
                   "cams", needs_layer=True),
    SaliencyMethod("hirescam", "HiResCAM", "activation times gradient per position, summed over channels "
                   "(Draelos & Carin 2020)", "cams", needs_layer=True),
    SaliencyMethod("gradcam_elementwise", "Grad-CAM element-wise", "ReLU of activation times gradient per "
                   "position, summed over channels", "cams", needs_layer=True),
    SaliencyMethod("eigengradcam", "EigenGrad-CAM", "first principal component of activation x gradient",
                   "cams", needs_layer=True),
    SaliencyMethod("eigencam", "Eigen-CAM", "first principal component of the layer's activations; no gradient, "
                   "not class-specific (Muhammad & Yeasin 2020)", "cams", needs_layer=True),
    SaliencyMethod("lrp_epsilon", "LRP-epsilon", "relevance propagated with the epsilon rule at every layer "
                   "(Bach et al. 2015)", "lrp"),
    SaliencyMethod("lrp_epsilon_plus_flat", "LRP EpsilonPlusFlat", "relevance: flat first layer, z+ convolutions, "
                   "epsilon dense layers (zennit's composite)", "lrp"),
    SaliencyMethod("lrp_alpha2_beta1", "LRP alpha2-beta1", "relevance: alpha=2 beta=1 convolutions, epsilon dense "
                   "layers (zennit's EpsilonAlpha2Beta1)", "lrp"),
    SaliencyMethod("fullgrad", "FullGrad", "|input x gradient| plus |bias x gradient| of every layer "
                   "(Srinivas & Fleuret 2019)", "fullgrad"),
    SaliencyMethod("input_x_gradient", "gradient x input", "input times its gradient", "gradients",
                   input_rule="plain"),
    SaliencyMethod("smoothgrad", "SmoothGrad", "base map averaged over noisy copies (Smilkov et al. 2017)",
                   "noise_tunnel", expensive=True, defaults=_NOISE),
    SaliencyMethod("squaregrad", "SquareGrad", "mean square of the base map over noisy copies (Hooker et al. 2019)",
                   "noise_tunnel", expensive=True, defaults=_NOISE),
    SaliencyMethod("vargrad", "VarGrad", "variance of the base map over noisy copies (Adebayo et al. 2018)",
                   "noise_tunnel", expensive=True, defaults=_NOISE),
    SaliencyMethod("integrated_gradients", "integrated gradients", "gradients integrated along the path from a "
                   "black baseline (Sundararajan et al. 2017)", "integrated", expensive=True,
                   defaults=(("steps", 32),)),
    SaliencyMethod("occlusion", "occlusion", "score drop when a square is greyed out (Zeiler & Fergus 2014)",
                   "perturbation", expensive=True, defaults=(("window", 32), ("stride", 16))),
    SaliencyMethod("scorecam", "Score-CAM", "channels weighted by the score of the image masked by each "
                   "(Wang et al. 2020)", "perturbation", needs_layer=True, expensive=True),
    SaliencyMethod("ablationcam", "Ablation-CAM", "channels weighted by the score drop when each is ablated "
                   "(Desai & Ramaswamy 2020)", "perturbation", needs_layer=True, expensive=True),
)}
LIVE_CYCLE = (None, *METHODS)  # the live key's order: off -> gradient -> guided -> deconvnet -> Grad-CAM -> ...
SINGLE_PASS = frozenset(name for name, m in METHODS.items() if not m.expensive)  # what saliency_pass computes


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


def _layer_for(method: SaliencyMethod, layer: str | None, layers: list[str], options: dict | None = None) -> str | None:
    needs = method.needs_layer or (method.family == "noise_tunnel" and (options or {}).get("base") in LAYER_CAMS)
    if not needs:
        return layer
    if layer is not None:
        return layer
    if layers:
        return layers[-1]  # the deepest visualisable layer: the CAMs' usual choice
    raise DeepvisError(f"{method.title} needs a layer: pass layer='<dotted module name>' (deepvis layers)")


def _score_forward(module: nn.Module, target: Target):
    """Batch -> (B, classes) logits, or (B, 1) unit scores for a unit target (occlusion's forward)."""
    if isinstance(target, ClassTarget):
        return module
    return lambda batch: target_scores_of(module, batch, target)[:, None]


def saliency_map(model, x: torch.Tensor, method: str, /, target=None, layer: str | None = None,
                 progress: Callable[[float], None] | None = None, **options) -> torch.Tensor:
    """The ``method`` map of image ``x`` (1, 3, H, W) for ``target`` (see ``as_target``: None for
    top-1, a class index or name, a UnitTarget). model: LoadedModel or nn.Module.
    layer: the CAMs' layer (default: the model's deepest visualisable layer).
    options: occlusion window/stride/baseline/batch_size; integrated_gradients steps/method/
    baseline/batch_size; smoothgrad, squaregrad, vargrad samples/sigma/noise/batch_size/base (the
    method they average: gradient, input_x_gradient, guided, deconvnet, an lrp_* or a gradient
    CAM); gradcam and the gradient CAMs relu; lrp_* epsilon; scorecam/ablationcam batch_size.
    progress: the expensive methods call it with the fraction done after each batch of forwards
    (it may raise to stop them); single-pass methods ignore it.
    Returns (3, H, W) for pixel methods, (H, W) for occlusion and FullGrad, (h, w) at the layer's
    resolution for the CAMs.
    """
    info = method_info(method)
    if info.expensive:
        options["progress"] = progress
    module, categories, layers = _module_and_categories(model)
    target = as_target(target, categories)
    options = {**dict(info.defaults), **options}
    layer = _layer_for(info, layer, layers, options)
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
    if method in LAYER_CAMS:
        return layer_cam_map(module, x, target, layer, method, **options)
    if method == "guided_gradcam":
        return guided_gradcam_map(module, x, target, layer, **options)
    if method in LRP_COMPOSITES:
        return lrp_map(module, x, target, method, **options)
    if method == "fullgrad":
        return fullgrad_pass(module, x, target)[0]
    if method in NOISE_TUNNELS:
        return noise_tunnel_map(module, x, target, method, layer=layer, **options)
    if method == "integrated_gradients":
        return integrated_gradients_map(module, x, target, **options)
    if method == "occlusion":
        index = target.index if isinstance(target, ClassTarget) else 0
        return occlusion(_score_forward(inference_copy(module, x), target), x, index, **options)
    if method == "scorecam":
        return scorecam_map(module, x, target, layer, **options)
    if method == "ablationcam":
        return ablationcam_map(module, x, target, layer, **options)
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
    """Live-loop entry point for the single-pass methods (``SINGLE_PASS``: input gradients, every
    gradient CAM, Eigen-CAM, LRP, FullGrad): one forward pass of ``x`` (1, 3, H, W) that also
    captures ``capture`` layers for the mosaic, and one backward pass (none for Eigen-CAM; guided
    Grad-CAM adds a backward of the head) giving both the map and the per-channel gradient at
    ``layer``. Expensive methods are refused: run ``saliency_map`` for them in a background thread.
    """
    info = method_info(method)
    if info.expensive:
        raise DeepvisError(f"{info.title} is a background method: call saliency_map for it")
    module, categories, layers = _module_and_categories(model)
    target = as_target(target, categories)
    layer = _layer_for(info, layer, layers)
    capture = [c for c in capture if c != layer]
    if method == "eigencam":
        from toolbox.models.capture import forward_with_activations

        logits, acts = forward_with_activations(module, x, [layer, *capture])
        require_spatial(module, x, layer, acts[layer])
        return SaliencyPass(cam_from(method, acts[layer], None)[0], logits[0],
                            {name: a[0] for name, a in acts.items()}, None,
                            int(resolve_top1(target, logits).index) if isinstance(target, ClassTarget) else None)
    if method == "fullgrad":
        saliency, logits, acts, class_index = fullgrad_pass(module, x, target, capture)
        return SaliencyPass(saliency, logits[0], {name: a[0] for name, a in acts.items()}, None, class_index)
    if info.needs_layer:
        input_rule = "guided" if method == "guided_gradcam" else None
        result = backprop(module, x, target, input_rule=input_rule, layer=layer, layer_rule="plain", capture=capture)
        require_spatial(module, x, layer, result.activations[layer])
        if method == "guided_gradcam":
            cam = gradcam_from(result.activations[layer], result.layer_gradient)
            up = torch.nn.functional.interpolate(cam[:, None], size=x.shape[-2:], mode="nearest")
            saliency = (result.input_gradient * up)[0]
        else:
            saliency = cam_from(method, result.activations[layer], result.layer_gradient)[0]
    elif method in LRP_COMPOSITES:
        result = backprop(module, x, target, layer=layer, capture=capture, relevance=True,
                          rule_hooks=lambda: lrp_rules(module, method, x))
        saliency = result.input_gradient[0]
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
