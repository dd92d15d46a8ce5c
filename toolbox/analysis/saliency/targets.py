"""What a saliency map explains: a class score, or one unit of one layer.

A target turns one forward pass (logits plus captured activations) into one score per image;
saliency methods differentiate or perturb that score.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence, Union

import torch

from toolbox.errors import DeepvisError


@dataclass(frozen=True)
class ClassTarget:
    """A class logit. ``index=None`` means the top-1 class of the explained image."""

    index: int | None = None

    def describe(self, categories: Sequence[str] = ()) -> str:
        if self.index is None:
            return "top-1 class"
        name = categories[self.index] if self.index < len(categories) else ""
        return f"class {self.index} {name}".rstrip()


@dataclass(frozen=True)
class UnitTarget:
    """Channel ``channel`` of layer ``layer`` (dotted module name), reduced over space by its
    maximum or its mean: the Deep Visualization Toolbox's backprop origin under the cursor."""

    layer: str
    channel: int
    reduce: Literal["max", "mean"] = "max"

    def describe(self, categories: Sequence[str] = ()) -> str:
        return f"unit {self.layer}:{self.channel} ({self.reduce})"


Target = Union[ClassTarget, UnitTarget]


def as_target(spec, categories: Sequence[str] = ()) -> Target:
    """A Target from a loose spec: None or "top1", a class index, a class name (resolved with
    ``categories``), a (layer, channel[, "max"|"mean"]) tuple, or a Target."""
    if isinstance(spec, (ClassTarget, UnitTarget)):
        return spec
    if spec is None or (isinstance(spec, str) and spec.lower() in ("top1", "top-1")):
        return ClassTarget()
    if isinstance(spec, bool):
        raise DeepvisError(f"saliency target {spec!r} is not a class index, class name or unit")
    if isinstance(spec, int):
        return ClassTarget(spec)
    if isinstance(spec, str):
        if spec.isdigit():
            return ClassTarget(int(spec))
        lowered = [c.lower() for c in categories]
        if spec.lower() in lowered:
            return ClassTarget(lowered.index(spec.lower()))
        raise DeepvisError(f"unknown class name '{spec}': give a class index or an exact ImageNet label")
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        return UnitTarget(*spec)
    raise DeepvisError(f"saliency target {spec!r} is not a class index, class name or (layer, channel) unit")


def check_class_index(target: Target, num_classes: int) -> None:
    if isinstance(target, ClassTarget) and target.index is not None and not 0 <= target.index < num_classes:
        raise DeepvisError(f"class index {target.index} is out of range: the model has {num_classes} classes")


def resolve_top1(target: Target, logits: torch.Tensor) -> Target:
    """ClassTarget(None) -> the top-1 class of the first image of ``logits`` (N, classes)."""
    if isinstance(target, ClassTarget) and target.index is None:
        return ClassTarget(int(logits[0].argmax()))
    return target


def target_scores(target: Target, logits: torch.Tensor, activations: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N,) score per image. ``activations[layer]`` (N, C, h, w) must be captured for unit targets.
    ClassTarget(None) takes each image's own top-1 class."""
    if isinstance(target, ClassTarget):
        check_class_index(target, logits.shape[1])
        if target.index is None:
            return logits.gather(1, logits.detach().argmax(1, keepdim=True))[:, 0]
        return logits[:, target.index]
    act = activations[target.layer]
    if not 0 <= target.channel < act.shape[1]:
        raise DeepvisError(f"channel {target.channel} is out of range: layer '{target.layer}' has {act.shape[1]} channels")
    unit = act[:, target.channel].flatten(1)
    if target.reduce == "max":
        return unit.amax(1)
    if target.reduce == "mean":
        return unit.mean(1)
    raise DeepvisError(f"unit reduce must be 'max' or 'mean', not {target.reduce!r}")


def target_scores_of(model, batch: torch.Tensor, target: Target) -> torch.Tensor:
    """(B,) scores of ``target`` for a batch, one forward without gradients (unit targets capture
    their layer on the way, from this thread's forward only). ClassTarget(None) takes each image's
    own top-1 class: resolve it first."""
    from toolbox.models.capture import forward_with_activations

    if isinstance(target, ClassTarget):
        with torch.inference_mode():
            return target_scores(target, model(batch), {})
    logits, activations = forward_with_activations(model, batch, [target.layer])
    return target_scores(target, logits, activations)
