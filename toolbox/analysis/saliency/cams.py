"""Gradient class-activation maps at any layer, all from one forward and one backward pass.

Every method here is a function of the layer's activation A (N, C, h, w) and the target score's
gradient G = d score / d A at the same layer: the backward only runs through the network after
the layer, so each costs about one forward pass plus the head's backward, and all of them share
that pass (the live loop computes A and G once and can draw any of these maps from them).
Eigen-CAM needs no gradient at all.

Maps are (N, h, w) at the layer's resolution, raw (not min-max normalised, not resized), after
the ReLU every method applies. Each equals ``get_cam_image`` of pytorch-grad-cam's class of the
same name followed by its ``np.maximum(cam, 0)``; the epsilons are theirs.

    gradcam              sum_c mean_hw(G_c) A_c                         (Selvaraju et al. 2017)
    gradcam_plus_plus    sum_c w_c A_c, w_c = sum_hw relu(G) a, a = G^2 / (2 G^2 + sum_hw(A) G^3)
                                                                        (Chattopadhay et al. 2018)
    xgradcam             sum_c w_c A_c, w_c = sum_hw G A / sum_hw A      (Fu et al. 2020)
    layercam             sum_c relu(G_c) A_c                            (Jiang et al. 2021)
    hirescam             sum_c G_c A_c                                  (Draelos & Carin 2020)
    gradcam_elementwise  sum_c relu(G_c A_c)
    eigengradcam         first principal component of G A over channels
    eigencam             first principal component of A                 (Muhammad & Yeasin 2020)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolbox.analysis.saliency.backprop import backprop
from toolbox.analysis.saliency.targets import Target
from toolbox.errors import DeepvisError

GRADIENT_CAMS = ("gradcam", "gradcam_plus_plus", "xgradcam", "layercam", "hirescam", "gradcam_elementwise",
                 "eigengradcam")
LAYER_CAMS = (*GRADIENT_CAMS, "eigencam")  # every method ``cam_from`` computes


def principal_projection(features: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h, w): each position's projection on the first principal direction of
    the channel vectors (positions as samples, centred per channel), as pytorch-grad-cam's
    ``get_2d_projection``. A singular vector's sign is arbitrary (LAPACK picks one), so the map is
    flipped where its most negative value outweighs its largest one, the sign correction of
    pytorch-grad-cam's ``get_2d_projection_with_sign_correction`` (Seg-Eigen-CAM, eq. 13): the
    map then points where the component is strongest, the same on every machine."""
    n, c, h, w = features.shape
    samples = torch.nan_to_num(features.double()).reshape(n, c, h * w).transpose(1, 2)  # (N, hw, C)
    samples = samples - samples.mean(dim=1, keepdim=True)
    # The top right-singular vector from the smaller Gram matrix (hw x hw or C x C): the same
    # direction as a full SVD at a fraction of its cost for wide layers (1280 channels, 49 positions).
    if h * w <= c:
        _, vectors = torch.linalg.eigh(samples @ samples.transpose(1, 2))
        direction = samples.transpose(1, 2) @ vectors[:, :, -1:]  # (N, C, 1)
    else:
        _, vectors = torch.linalg.eigh(samples.transpose(1, 2) @ samples)
        direction = vectors[:, :, -1:]
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-30)
    projection = (samples @ direction)[..., 0].reshape(n, h, w)
    flip = projection.amin(dim=(1, 2)).abs() > projection.amax(dim=(1, 2)).abs()
    return torch.where(flip[:, None, None], -projection, projection).to(features.dtype)


def cam_from(method: str, activation: torch.Tensor, gradient: torch.Tensor | None, relu: bool = True) -> torch.Tensor:
    """(N, C, h, w) activation and its gradient (None for eigencam) -> (N, h, w) ``method`` map,
    >= 0 (signed with relu=False). ``method`` is one of LAYER_CAMS."""
    a, g = activation, gradient
    if method == "eigencam":
        cam = principal_projection(a)
    elif g is None:
        raise ValueError(f"{method} needs the layer gradient")
    elif method == "gradcam":
        cam = (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1)
    elif method == "gradcam_plus_plus":
        g2 = g * g
        alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g + 1e-6)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        weights = (g.clamp_min(0) * alpha).sum(dim=(2, 3), keepdim=True)
        cam = (weights * a).sum(dim=1)
    elif method == "xgradcam":
        weights = (g * a / (a.sum(dim=(2, 3), keepdim=True) + 1e-7)).sum(dim=(2, 3), keepdim=True)
        cam = (weights * a).sum(dim=1)
    elif method == "layercam":
        cam = (g.clamp_min(0) * a).sum(dim=1)
    elif method == "hirescam":
        cam = (g * a).sum(dim=1)
    elif method == "gradcam_elementwise":
        cam = (g * a).clamp_min(0).sum(dim=1)
    elif method == "eigengradcam":
        cam = principal_projection(g * a)
    else:
        raise ValueError(f"unknown layer CAM {method!r}: one of {', '.join(LAYER_CAMS)}")
    return cam.clamp_min(0) if relu else cam


def gradcam_from(activation: torch.Tensor, gradient: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """(N, C, h, w) activation and d score / d activation -> (N, h, w) Grad-CAM."""
    return cam_from("gradcam", activation, gradient, relu)


def require_spatial(model: nn.Module, x: torch.Tensor, layer: str, activation) -> None:
    """A DeepvisError unless ``activation`` (``layer``'s output for ``x``) is a (N, C, h, w) feature
    map with more than one position, naming the deepest module output that is one."""
    if isinstance(activation, torch.Tensor) and activation.dim() == 4 and activation.shape[-1] * activation.shape[-2] > 1:
        return
    from toolbox.models.capture import forward_with_activations

    leaves = [n for n, m in model.named_modules() if n and not list(m.children())]
    _, outputs = forward_with_activations(model, x[:1], leaves)
    spatial = [n for n in leaves if isinstance(outputs.get(n), torch.Tensor) and outputs[n].dim() == 4
               and outputs[n].shape[-1] * outputs[n].shape[-2] > 1]
    shape = "x".join(map(str, activation.shape)) if isinstance(activation, torch.Tensor) else "no tensor"
    hint = f"e.g. '{spatial[-1]}' (deepvis layers)" if spatial else "this model has no spatial feature map"
    raise DeepvisError(f"layer '{layer}' outputs {shape}, not a spatial (N, C, h, w) feature map, so a CAM has "
                       f"nothing to localise: pick a layer before global pooling, {hint}")


def layer_activation(model: nn.Module, x: torch.Tensor, layer: str, capture=()) -> tuple[torch.Tensor, dict]:
    """(logits (N, classes), {layer and ``capture``: (N, C, h, w)}) from one forward without gradients."""
    from toolbox.models.capture import forward_with_activations

    return forward_with_activations(model, x, [layer, *[c for c in capture if c != layer]])


def layer_cam_map(model: nn.Module, x: torch.Tensor, target: Target, layer: str, method: str = "gradcam",
                  relu: bool = True) -> torch.Tensor:
    """(h, w) ``method`` map of ``x`` (1, 3, H, W) at ``layer``'s resolution, unnormalised, >= 0
    (signed with relu=False). Grad-CAM equals captum LayerGradCam(relu_attributions=relu)."""
    if method == "eigencam":
        _, activations = layer_activation(model, x, layer)
        require_spatial(model, x, layer, activations[layer])
        return cam_from(method, activations[layer], None, relu)[0]
    result = backprop(model, x, target, input_rule=None, layer=layer)
    require_spatial(model, x, layer, result.activations[layer])
    return cam_from(method, result.activations[layer], result.layer_gradient, relu)[0]


def gradcam_map(model: nn.Module, x: torch.Tensor, target: Target, layer: str, relu: bool = True) -> torch.Tensor:
    """(h, w) Grad-CAM at ``layer``'s resolution, unnormalised, >= 0 (signed with relu=False);
    equals captum LayerGradCam(relu_attributions=relu)."""
    return layer_cam_map(model, x, target, layer, "gradcam", relu)


def guided_gradcam_map(model: nn.Module, x: torch.Tensor, target: Target, layer: str,
                       interpolate: str = "nearest") -> torch.Tensor:
    """(3, H, W) guided backprop times Grad-CAM upsampled to the input (``interpolate`` mode,
    nearest as captum GuidedGradCam). One forward, then a plain backward of the head for
    Grad-CAM and a guided backward for the input."""
    result = backprop(model, x, target, input_rule="guided", layer=layer, layer_rule="plain")
    require_spatial(model, x, layer, result.activations[layer])
    cam = gradcam_from(result.activations[layer], result.layer_gradient)[:, None]
    kwargs = {} if interpolate == "nearest" else {"align_corners": False}
    cam = F.interpolate(cam, size=x.shape[-2:], mode=interpolate, **kwargs)
    return (result.input_gradient * cam)[0]
