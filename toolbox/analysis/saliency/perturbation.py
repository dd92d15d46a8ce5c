"""Perturbation maps: how the score changes when part of the input or of a layer is removed.

Occlusion (Zeiler & Fergus 2014) replaces squares of the image by a baseline; it needs only batched
forward passes, so it runs on any backend (PyTorch, onnxruntime) that maps a batch to scores.
Score-CAM and Ablation-CAM weight a layer's channels by the score of the image masked by each
channel, or of the network with each channel ablated; both run their forwards in batches.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from toolbox.analysis.optimise.device import OOM_ERRORS
from toolbox.analysis.saliency.cams import require_spatial
from toolbox.analysis.saliency.targets import Target, UnitTarget, resolve_top1, target_scores, target_scores_of
from toolbox.models.batch_norm_folding import inference_copy
from toolbox.models.capture import forward_with_activations, register_own_forward_hook, resolve_module


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets along one axis: every ``stride`` pixels, the last window cropped at the
    border (captum Occlusion's positions: ceil((size - window) / stride) + 1 windows)."""
    count = math.ceil(max(size - window, 0) / stride) + 1
    return [i * stride for i in range(count)]


@torch.no_grad()
def occlusion(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, target: int | None,
              window: int = 16, stride: int = 8, baseline: float = 0.0, batch_size: int = 64,
              progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """(H, W) occlusion map for one image.

    forward: (B, 3, H, W) model input -> (B, classes) scores; called with at most ``batch_size``
      occluded copies at a time (any backend: torch module, onnxruntime session wrapper).
    x: (1, 3, H, W) model input. target: class index, or None for the top-1 class of x.
    window, stride: square occluder side and step in pixels; all channels are occluded together.
    baseline: occluder value in model-input units.
    Value at a pixel: mean over the windows covering it of score(x) - score(x occluded), as captum
    Occlusion(sliding_window_shapes=(3, window, window), strides=(3, stride, stride)) returns per channel.
    progress: called with the fraction of windows done after each batch (it may raise to stop).
    """
    height, width = x.shape[-2:]
    base_scores = forward(x)
    if target is None:
        target = int(base_scores[0].argmax())
    base = base_scores[0, target]
    boxes = [(top, left) for top in window_starts(height, window, stride) for left in window_starts(width, window, stride)]
    total = torch.zeros((height, width), dtype=torch.float32, device=x.device)
    count = torch.zeros((height, width), dtype=torch.float32, device=x.device)
    for start in range(0, len(boxes), batch_size):
        chunk = boxes[start : start + batch_size]
        batch = x.expand(len(chunk), -1, -1, -1).clone()
        for i, (top, left) in enumerate(chunk):
            batch[i, :, top : top + window, left : left + window] = baseline
        drops = base - forward(batch)[:, target].float()
        for drop, (top, left) in zip(drops.tolist(), chunk):
            total[top : top + window, left : left + window] += drop
            count[top : top + window, left : left + window] += 1
        if progress is not None:
            progress((start + len(chunk)) / len(boxes))
    return total / count


def _layer_and_score(model: nn.Module, x: torch.Tensor, target: Target, layer: str):
    """(activation (1, C, h, w) at ``layer``, the resolved target, its score on x) from one forward."""
    layers = [layer] + ([target.layer] if isinstance(target, UnitTarget) and target.layer != layer else [])
    logits, activations = forward_with_activations(model, x, layers)
    require_spatial(model, x, layer, activations[layer])
    target = resolve_top1(target, logits)
    return activations[layer], target, float(target_scores(target, logits, activations)[0])


def distinct_masks(activation: torch.Tensor, resolution: float = 2.0**-20) -> tuple[torch.Tensor, torch.Tensor]:
    """(representatives (D,), group (C,)) for a (C, h, w) activation: channels whose min-max
    scaled maps (pytorch-grad-cam's scaling, 1e-8 in the denominator) agree on a grid of
    ``resolution`` fall in one group, ``activation[representatives[group[c]]]``'s mask standing for
    channel c's. Scaling commutes with bilinear upsampling with aligned corners (its extremes lie
    on the grid points), so equal maps here mean equal masks at the input size. All-zero channels
    share one group (their masks are exactly 0). A channel whose range is under 1e-3 of its
    magnitude (a constant non-zero one, e.g. a ReLU6 saturated everywhere) keeps a group of its
    own: its upsampled mask is float rounding scaled up, different for every such channel."""
    flat = activation.flatten(1).float()
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    magnitude = torch.maximum(lo.abs(), hi.abs())
    own = ((hi - lo <= 1e-3 * magnitude) & (magnitude > 0))[:, 0]
    channels = torch.arange(len(flat), device=flat.device)
    scaled = torch.round((flat - lo) / (hi - lo + 1e-8) / resolution)
    key = torch.cat([scaled, torch.where(own, channels, -1)[:, None].to(scaled.dtype)], dim=1)
    _, group = torch.unique(key, dim=0, return_inverse=True)
    first = torch.full((int(group.max()) + 1,), len(flat), device=flat.device, dtype=channels.dtype)
    first = first.scatter_reduce(0, group, channels, reduce="amin")
    return first, group


CPU_BATCH = 32  # masked images per forward on a CPU: larger batches cost memory and gain nothing


def _masked_scores(scoring: nn.Module, x: torch.Tensor, activation: torch.Tensor, channels: torch.Tensor,
                   target: Target) -> torch.Tensor:
    """(len(channels),) target scores of x masked by each of ``channels``' maps of ``activation``
    (C, h, w), upsampled bilinearly with aligned corners and min-max scaled; one forward."""
    up = F.interpolate(activation[channels][None], size=x.shape[-2:], mode="bilinear", align_corners=True)[0]
    lo, hi = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    masks = (up - lo) / (hi - lo + 1e-8)
    masked = torch.empty((len(channels), *x.shape[1:]), dtype=x.dtype, device=x.device,
                         memory_format=torch.channels_last)
    torch.mul(x, masks[:, None].to(x.dtype), out=masked)
    return target_scores_of(scoring, masked, target).float()


@torch.no_grad()
def scorecam_map(model: nn.Module, x: torch.Tensor, target: Target, layer: str, batch_size: int | None = None,
                 relu: bool = True, progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """(h, w) Score-CAM (Wang et al. 2020) at ``layer``'s resolution, >= 0 (signed with
    relu=False), unnormalised: the layer's channels weighted by the softmax over channels of the
    target score of x masked by each channel (upsampled bilinearly with aligned corners, min-max
    scaled with pytorch-grad-cam's 1e-8). Equals pytorch-grad-cam's ScoreCAM before its
    normalisation and resizing.

    One forward per distinct mask: channels whose min-max scaled maps agree to 1e-6 (all-zero
    channels, whose masks black out the whole image; channels active at one and the same position)
    share it (``distinct_masks``). The masked images go through ``inference_copy(model)``:
    BatchNorm folded into the convolutions and everything laid out channels-last (on a CPU 1.6x
    the eager forward on resnet18, 2.1x on lite0; scores equal within float rounding).

    batch_size: masked images per forward; None: ``CPU_BATCH`` on a CPU, every mask at once on a
      GPU. When a batch runs out of GPU memory it is halved and retried (down to one image).
    progress: called with the fraction of masks done after each batch (it may raise to stop).
    """
    activation, target, _ = _layer_and_score(model, x, target, layer)
    scoring = inference_copy(model, x)
    a = activation[0].float()
    distinct, group = distinct_masks(a)
    if batch_size is None:
        batch_size = len(distinct) if x.device.type == "cuda" else CPU_BATCH
    distinct_scores = torch.empty(len(distinct), device=x.device)
    start = 0
    while start < len(distinct):
        channels = distinct[start : start + batch_size]
        try:
            distinct_scores[start : start + len(channels)] = _masked_scores(scoring, x, a, channels, target)
        except OOM_ERRORS:
            if batch_size == 1:
                raise
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            batch_size //= 2
            continue
        start += len(channels)
        if progress is not None:
            progress(start / len(distinct))
    weights = distinct_scores[group].softmax(dim=0)
    cam = (weights[:, None, None] * a).sum(0)
    return cam.clamp_min(0) if relu else cam


class _Replace:
    """Forward hook handing the network ``value`` instead of the module's output (registered for
    the calling thread's forwards only)."""

    def __init__(self):
        self.value: torch.Tensor | None = None

    def __call__(self, module, inputs, output):
        return self.value


@torch.no_grad()
def ablationcam_map(model: nn.Module, x: torch.Tensor, target: Target, layer: str, batch_size: int = 32,
                    relu: bool = True, progress: Callable[[float], None] | None = None) -> torch.Tensor:
    """(h, w) Ablation-CAM (Desai & Ramaswamy 2020) at ``layer``'s resolution, >= 0 (signed
    with relu=False), unnormalised:
    channels weighted by (score - score with the channel ablated) / score. An ablated channel is
    set to 0 when the layer's minimum is 0 (a ReLU output), else to that minimum - 1e7 (the value
    of pytorch-grad-cam's AblationLayer), the same value for every channel whatever the batch size.

    Equals pytorch-grad-cam's AblationCAM before its normalisation and resizing on ReLU outputs at
    any batch size, and on every layer when it runs with batch_size=1. Its batches differ on other
    layers: AblationLayer writes the copies of a batch one after another and takes the minimum of
    the whole batch afresh for each, a minimum that already includes the copies written before, so
    copy i of a batch (channel c at i = c mod batch_size) gets minimum - (i + 1) * 1e7 and a
    channel's weight depends on its place in the batch. Where a ReLU follows the layer every such
    value is clipped to the same 0 and the maps agree (resnet18's ``layer2.0.downsample``); where the
    value reaches the score linearly (a MobileNetV3 linear bottleneck through its skip) they do not
    (0.97 of the map's maximum apart at ``features.6`` of a random-weight mobilenet_v3_large, batch
    32, on a 64-pixel noise image).

    Only the network after ``layer`` runs per batch of ablations: the layer's output is replaced
    by ``batch_size`` ablated copies of it while the layers before see x once (broadcast over
    the batch); models whose later code mixes the batch with earlier tensors in a way that does
    not broadcast get the whole network per batch instead. progress: called with the fraction of
    channels done after each batch (it may raise to stop)."""
    activation, target, original = _layer_and_score(model, x, target, layer)
    a = activation.to(torch.promote_types(activation.dtype, torch.float32))
    channels = a.shape[1]
    low = float(a.min())
    value = 0.0 if low == 0 else low - 1e7
    replace = _Replace()
    handle = register_own_forward_hook(resolve_module(model, layer), replace)
    scores = torch.empty(channels, dtype=a.dtype, device=x.device)
    try:
        for start in range(0, channels, batch_size):
            index = torch.arange(start, min(start + batch_size, channels), device=x.device)
            ablated = activation.expand(len(index), -1, -1, -1).clone()
            ablated[torch.arange(len(index)), index] = value
            replace.value = ablated
            try:
                chunk = target_scores_of(model, x, target)
            except RuntimeError:
                chunk = None
            if chunk is None or chunk.shape[0] != len(index):
                chunk = target_scores_of(model, x.expand(len(index), -1, -1, -1), target)
            scores[index] = chunk.to(a.dtype)
            if progress is not None:
                progress(int(index[-1] + 1) / channels)
    finally:
        handle.remove()
    weights = (original - scores) / original
    cam = (weights[:, None, None] * a[0]).sum(0)
    return cam.clamp_min(0) if relu else cam
