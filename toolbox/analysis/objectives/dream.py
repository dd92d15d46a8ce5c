"""What a dream maximises: per-layer terms that are sums over activation positions.

Every term maps a layer's activations ``(N, C, h, w)`` to a per-position map ``(N, C', h, w)``
whose sum is the term's value. Keeping terms additive over positions is what makes the tiled
gradient exact: a tile contributes the sum over its interior positions, and the sum over tiles
equals the sum over the whole image. Dividing by ``count`` (the number of elements the term sums
over on the *whole* octave) keeps layers of different sizes comparable, as the TF tutorial does.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch

from toolbox.analysis.optimise.network import LOGITS

TERMS = ("mean", "l2", "channel", "guide", "logit")


@dataclass(frozen=True)
class LayerTerm:
    """One layer's share of the objective.

    kind: "mean" (TF tutorial: mean activation), "l2" (google: gradient at the layer = the
    activation, i.e. half the mean square), "channel" (mean of one channel), "guide" (google's
    guided dream: each position pulls toward its best-matching guide feature vector), "logit"
    (one class logit ``channel`` of the full network; layer must be ``"logits"``; not spatial,
    so a tiled run sums each tile's logit).
    """

    layer: str
    weight: float = 1.0
    kind: str = "l2"
    channel: int | None = None

    def elements_per_position(self, channels: int) -> int:
        return channels if self.kind in ("mean", "l2") else 1


def term_map(term: LayerTerm, act: torch.Tensor, guide: torch.Tensor | None = None) -> torch.Tensor:
    """(N, C, h, w) activations -> (N, C', h, w) map whose sum is the term (before / count).

    guide: (C, M) guide feature vectors (only for kind "guide").
    """
    if term.kind == "mean":
        return act
    if term.kind == "l2":
        return 0.5 * act * act
    if term.kind == "channel":
        return act[:, term.channel : term.channel + 1]
    if term.kind == "logit":
        return act[:, term.channel : term.channel + 1]
    if term.kind == "guide":
        n, c, h, w = act.shape
        flat = act.reshape(n, c, h * w)
        # Which guide vector each position matches best is a choice, not a function to differentiate.
        best = torch.einsum("ncp,cm->npm", flat.detach(), guide).argmax(dim=2)  # (N, hw)
        target = guide.t()[best]  # (N, hw, C)
        return torch.einsum("ncp,npc->np", flat, target).reshape(n, 1, h, w)
    raise ValueError(f"unknown objective term {term.kind!r} (one of {', '.join(TERMS)})")
