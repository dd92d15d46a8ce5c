"""Feature inversion (Mahendran & Vedaldi 2015): the loss whose minimiser is a pre-image of Φ0.

    loss(x) = ‖Φ(x) − Φ0‖² / ‖Φ0‖²  +  λ_α · N_α(x)  +  λ_TV · TV_β(x)

with the regularisers normalised as the paper normalises them, so that the λs mean the same at
every image size and the data term is comparable across layers (IJCV 2016, §3.3):
  N_α(x)  = Σ |x_i|^α / (H·W·B^α)                       (α-norm of the mean-subtracted image)
  TV_β(x) = Σ_{c,u,v} ((x_{u,v+1} − x_{u,v})² + (x_{u+1,v} − x_{u,v})²)^{β/2} / (H·W·V^β)
x is in the paper's units (0-255, ImageNet mean subtracted); B = 80 is the typical pixel norm of
natural images there and V = B / 6.5 the typical step between neighbours. α = 6 and β = 2 as in
the paper. The paper weighs the data term by a constant C and grows λ_TV with depth (0.5 for
shallow, 5 for middle, 50 for deep layers); dividing through by C gives the λs here:
λ_TV = (0.5, 5, 50) / C and λ_α = 1 / C, with C = 100. C was measured on lite0 (the cat at
64x48, 100 Adam steps, tests/test_inversion.py): C = 1 gives a grey blur (PSNR 17.6 dB from
_blocks.1, the regularisers outweigh the data term 10:1); C = 100 gives 23.9 dB there and the
least noisy middle-layer picture; C = 1000 brings back high-frequency noise in the middle layers.
Tensors: x (1, 3, H, W) RGB in [0, 1]; activations (1, C, h, w) or (1, K).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

ALPHA, BETA = 6.0, 2.0
B = 80.0  # typical Euclidean norm of a natural image's pixel, in 0-255 mean-subtracted units
V = B / 6.5  # typical neighbour difference, same units
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
DATA_WEIGHT = 100.0  # the paper's C, moved onto the regularisers (see above)
TV_LAMBDAS = tuple(v / DATA_WEIGHT for v in (0.5, 5.0, 50.0))  # paper: conv1-2, conv3-4, conv5 and fully connected
ALPHA_LAMBDA = 1.0 / DATA_WEIGHT


def paper_units(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB [0, 1] -> the paper's 0-255 scale with the ImageNet mean subtracted."""
    mean = torch.tensor(IMAGENET_MEAN_RGB, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return 255.0 * (rgb - mean)


def feature_distance(act: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖Φ(x) − Φ0‖² / ‖Φ0‖² (0 at the target; 1 for the all-zero representation)."""
    return (act - target).pow(2).sum() / target.pow(2).sum().clamp(min=1e-12)


def alpha_norm(x: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """Σ |x_i|^α over every element of x (the un-normalised α-norm to the α)."""
    return x.abs().pow(alpha).sum()


def total_variation(x: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """Σ ((x_{u,v+1} − x_{u,v})² + (x_{u+1,v} − x_{u,v})²)^{β/2} over channels and the (H−1)(W−1) positions
    that have both neighbours (the un-normalised TV^β)."""
    dx = x[..., :-1, 1:] - x[..., :-1, :-1]
    dy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return (dx * dx + dy * dy).pow(beta / 2.0).sum()


def normalised_alpha_norm(rgb: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """N_α of an RGB [0, 1] image: ≈ 1 for a natural image of typical contrast."""
    h, w = rgb.shape[-2:]
    return alpha_norm(paper_units(rgb), alpha) / (h * w * B**alpha)


def normalised_total_variation(rgb: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """TV_β of an RGB [0, 1] image in the paper's normalisation (≈ 1 for natural images)."""
    h, w = rgb.shape[-2:]
    return total_variation(255.0 * rgb, beta) / (h * w * V**beta)


def tv_lambda_for_depth(depth: float) -> float:
    """The paper's λ_TV for a layer ``depth`` of the way through the network (0 = input, 1 = logits)."""
    return TV_LAMBDAS[0] if depth < 0.3 else TV_LAMBDAS[1] if depth < 0.7 else TV_LAMBDAS[2]


@dataclass
class InversionObjective:
    """-loss(x) (the engine maximises): ``objective(acts, rgb)`` with acts = {layer: activation}."""

    layer: str
    target: torch.Tensor
    tv_lambda: float
    alpha_lambda: float = ALPHA_LAMBDA
    alpha: float = ALPHA
    beta: float = BETA

    def terms(self, acts: dict[str, torch.Tensor], rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"feature": feature_distance(acts[self.layer], self.target),
                "alpha": self.alpha_lambda * normalised_alpha_norm(rgb, self.alpha),
                "tv": self.tv_lambda * normalised_total_variation(rgb, self.beta)}

    def __call__(self, acts: dict[str, torch.Tensor], rgb: torch.Tensor) -> torch.Tensor:
        return -sum(self.terms(acts, rgb).values())
