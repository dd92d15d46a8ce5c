"""Texture synthesis and style transfer (Gatys et al. 2015, 2016): Gram, style, content and TV losses.

    G_l(x)  = F Fᵀ / (C·h·w)        F: layer l's activation as (C, h·w)
    style   = Σ_l w_l ‖G_l(x) − G_l(s)‖²_F / ‖G_l(s)‖²_F     (each layer's difference relative to the
                                                              style's own Gram, so layers of any scale count alike)
    content = ‖F_c(x) − F_c(c)‖² / ‖F_c(c)‖²                  (the inversion data term, one layer)
    tv      = Σ ((x_{u,v+1} − x_{u,v})² + (x_{u+1,v} − x_{u,v})²) / (3·H·W)      (β = 2, per pixel)
    loss    = style_weight · style + content_weight · content + tv_weight · tv

Dividing the Gram by h·w makes it a mean over positions, so a texture of any size can match a
style image of another size. Tensors: activations (1, C, h, w); x (1, 3, H, W) RGB in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from toolbox.analysis.objectives.inversion import feature_distance, total_variation


def gram(act: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, C) = F Fᵀ / (C·h·w)."""
    n, c, h, w = act.shape
    f = act.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def gram_distance(g: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖G − T‖²_F / ‖T‖²_F."""
    return (g - target).pow(2).sum() / target.pow(2).sum().clamp(min=1e-12)


def style_loss(acts: dict[str, torch.Tensor], targets: dict[str, torch.Tensor],
               weights: dict[str, float] | None = None) -> torch.Tensor:
    """Σ_l w_l ‖G_l − T_l‖²_F / ‖T_l‖²_F over the layers of ``targets`` (w_l = 1 / layers by default)."""
    total = 0.0
    for layer, target in targets.items():
        w = (weights or {}).get(layer, 1.0 / len(targets))
        total = total + w * gram_distance(gram(acts[layer]), target)
    return total


def pixel_tv(rgb: torch.Tensor) -> torch.Tensor:
    """Total variation with β = 2 per pixel and channel of an RGB [0, 1] image."""
    return total_variation(rgb, 2.0) / rgb[0].numel()


@dataclass
class StyleObjective:
    """-loss (the engine maximises): ``objective(acts, rgb)``; ``content_target`` None = texture synthesis."""

    style_targets: dict[str, torch.Tensor]  # layer -> (1, C, C) Gram of the style image
    content_layer: str | None = None
    content_target: torch.Tensor | None = None
    style_weight: float = 1.0
    content_weight: float = 1.0
    tv_weight: float = 0.0
    layer_weights: dict[str, float] = field(default_factory=dict)

    def terms(self, acts: dict[str, torch.Tensor], rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"style": self.style_weight * style_loss(acts, self.style_targets, self.layer_weights or None)}
        if self.content_target is not None:
            terms["content"] = self.content_weight * feature_distance(acts[self.content_layer], self.content_target)
        if self.tv_weight:
            terms["tv"] = self.tv_weight * pixel_tv(rgb)
        return terms

    def __call__(self, acts: dict[str, torch.Tensor], rgb: torch.Tensor) -> torch.Tensor:
        return -sum(self.terms(acts, rgb).values())
