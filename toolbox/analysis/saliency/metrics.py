"""Faithfulness of a saliency map: does the model's score follow the pixels the map ranks highest?

    deletion     AUC of the target probability as the most relevant pixels are set to 0, in
                 ``steps`` equal steps (Petsiuk et al. 2018, RISE's CausalMetric): lower is better
    insertion    AUC as the most relevant pixels are put back into a blurred copy: higher is better
    road         ROAD (Rong et al. 2022) as pytorch-grad-cam's ROADCombined: the mean over
                 percentiles of (score change when the least relevant pixels are imputed - score
                 change when the most relevant are) / 2, imputing by noisy linear interpolation of
                 the neighbours: higher is better
    average_drop           100 max(0, Y - O) / Y with O the probability of the image times the
                           map scaled to [0, 1] (Chattopadhay et al. 2018): lower is better
    increase_in_confidence 100 [O > Y]: higher is better

Scores are the target class's softmax probability (a unit target's activation for unit targets).
Perturbed images go through the model in batches. Maps of any method are first reduced to (H, W)
relevance: |map| maximised over colour channels for pixel maps, bilinear upsampling for layer maps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from toolbox.analysis.saliency.targets import ClassTarget, Target, target_scores_of

METRICS = ("deletion", "insertion", "road", "average_drop", "increase_in_confidence")
HIGHER_IS_BETTER = {"deletion": False, "insertion": True, "road": True, "average_drop": False,
                    "increase_in_confidence": True}
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
# ROAD's imputation: each missing pixel is the weighted mean of its 8 neighbours (Rong et al. 2022)
NEIGHBOUR_WEIGHTS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
                     ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))

Scorer = Callable[[torch.Tensor], torch.Tensor]


def relevance_map(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Any method's map -> (H, W) float32 relevance at the input size: |map| maximised over channels
    for (3, H, W) maps, (h, w) maps upsampled bilinearly."""
    m = saliency.detach().float()
    if m.dim() == 3:
        m = m.abs().amax(dim=0)
    if tuple(m.shape) != tuple(size):
        m = F.interpolate(m[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    return m


def probability_scorer(model, target: Target) -> Scorer:
    """Batch (B, 3, H, W) -> (B,) the target's softmax probability (a unit's activation for units).
    ClassTarget must be resolved (an index)."""
    if isinstance(target, ClassTarget):
        if target.index is None:
            raise ValueError("resolve the top-1 class before scoring")

        def score(batch):
            with torch.inference_mode():
                return model(batch).float().softmax(dim=1)[:, target.index]

        return score
    return lambda batch: target_scores_of(model, batch, target).float()


def _batched(score: Scorer, images: Callable[[int, int], torch.Tensor], count: int, batch_size: int) -> torch.Tensor:
    return torch.cat([score(images(start, min(start + batch_size, count))) for start in range(0, count, batch_size)])


def auc(curve: torch.Tensor) -> float:
    """Trapezoidal area under a curve sampled at equal steps over [0, 1]."""
    return float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / (len(curve) - 1))


def blur_substrate(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """x blurred by RISE's insertion kernel (an 11x11 Gaussian, sigma 5, from scipy's filter of a
    delta; zero padding), per channel."""
    from scipy.ndimage import gaussian_filter

    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1
    kernel = torch.from_numpy(gaussian_filter(delta, sigma)).to(x.device, x.dtype)
    weight = kernel.expand(x.shape[1], 1, size, size)
    return F.conv2d(x, weight, padding=size // 2, groups=x.shape[1])


def causal_curve(score: Scorer, x: torch.Tensor, relevance: torch.Tensor, mode: str, steps: int = 50,
                 batch_size: int = 32) -> torch.Tensor:
    """(about steps + 1,) scores as the most relevant pixels move from the start image to the finish
    image: deletion x -> zeros, insertion blur(x) -> x. The pixel order is RISE's (its
    ``np.argsort(saliency)[::-1]``); each step moves ceil(H W / steps) pixels."""
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be deletion or insertion, not {mode!r}")
    start, finish = (x, torch.zeros_like(x)) if mode == "deletion" else (blur_substrate(x), x)
    height, width = x.shape[-2:]
    order = torch.argsort(relevance.flatten(), stable=True).flip(0)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    rank = rank.view(1, 1, height, width)
    per_step = -(-height * width // steps)
    count = -(-height * width // per_step) + 1  # RISE's n_steps + 1 points

    def images(lo, hi):
        moved = rank < (torch.arange(lo, hi, device=x.device) * per_step).view(-1, 1, 1, 1)
        return torch.where(moved, finish, start)

    return _batched(score, images, count, batch_size)


def linear_impute(image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(C, H, W) image with the pixels where ``keep`` (H, W) is False replaced by the solution of
    ROAD's linear system: each equals the weighted mean of its in-image neighbours (known or
    imputed), NEIGHBOUR_WEIGHTS. As pytorch-grad-cam's NoisyLinearImputer without its noise."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    channels, height, width = image.shape
    known = keep.flatten().cpu().numpy().astype(bool)
    values = image.reshape(channels, -1).double().cpu().numpy()
    missing = np.flatnonzero(~known)
    if missing.size == 0:
        return image.clone()
    index_of = np.full(height * width, -1)
    index_of[missing] = np.arange(missing.size)
    rows, cols, data = [], [], []
    rhs = np.zeros((missing.size, channels))
    diagonal = np.zeros(missing.size)
    y, x = np.divmod(missing, width)
    for (dy, dx), weight in NEIGHBOUR_WEIGHTS:
        ny, nx = y + dy, x + dx
        inside = (ny >= 0) & (nx >= 0) & (ny < height) & (nx < width)
        diagonal[inside] += weight
        neighbour = ny[inside] * width + nx[inside]
        equation = np.flatnonzero(inside)
        is_known = known[neighbour]
        rhs[equation[is_known]] -= weight * values[:, neighbour[is_known]].T
        rows.append(equation[~is_known])
        cols.append(index_of[neighbour[~is_known]])
        data.append(np.full((~is_known).sum(), weight))
    rows.append(np.arange(missing.size))
    cols.append(np.arange(missing.size))
    data.append(-diagonal)
    matrix = csc_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(missing.size, missing.size))
    solved = spsolve(matrix, rhs).reshape(missing.size, channels)
    out = image.reshape(channels, -1).clone()
    out[:, missing] = torch.from_numpy(solved.T).to(out.dtype).to(out.device)
    return out.reshape(channels, height, width)


def road_images(x: torch.Tensor, relevance: torch.Tensor, percentiles: Sequence[int] = ROAD_PERCENTILES,
                noise: float = 0.01, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(most relevant removed, least relevant removed), each (P, 3, H, W): for percentile p the
    pixels above the map's p-th percentile (MoRF), or below the (100 - p)-th (LeRF), imputed,
    plus Gaussian noise of std ``noise`` on the imputed pixels (pytorch-grad-cam's thresholds)."""
    m = relevance.double().cpu().numpy()
    morf, lerf = [], []
    for p in percentiles:
        for kept_map, out in ((m, morf), (1 - m, lerf)):
            keep = torch.from_numpy(kept_map < np.percentile(kept_map, p))
            image = linear_impute(x[0], keep)
            if noise:
                draw = torch.randn(image.shape, generator=generator).to(image.device, image.dtype)
                image = torch.where(keep.to(image.device), image, image + noise * draw)
            out.append(image)
    return torch.stack(morf), torch.stack(lerf)


def scaled_to_unit(relevance: torch.Tensor) -> torch.Tensor:
    """(H, W) min-max scaled to [0, 1] (pytorch-grad-cam's scale_cam_image eps, 1e-7)."""
    m = relevance - relevance.min()
    return m / (1e-7 + m.max())


@dataclass(frozen=True)
class Faithfulness:
    """One map's metrics (METRICS keys; None where not computed) and the deletion curve."""

    values: dict[str, float]
    deletion_curve: tuple[float, ...] = ()


def faithfulness(model, x: torch.Tensor, saliency: torch.Tensor, target: Target,
                 metrics: Sequence[str] = METRICS, steps: int = 50, batch_size: int = 32,
                 road_percentiles: Sequence[int] = ROAD_PERCENTILES, road_noise: float = 0.01, seed: int = 0,
                 check: Callable[[], None] | None = None) -> Faithfulness:
    """The chosen ``metrics`` of ``saliency`` (any method's map) for ``x`` (1, 3, H, W) and a resolved
    ``target``. check: called between batches (a background task's cancel check)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}: one of {', '.join(METRICS)}")
    scorer = probability_scorer(model, target)
    score = (lambda batch: (check(), scorer(batch))[1]) if check else scorer
    relevance = relevance_map(saliency, tuple(x.shape[-2:])).to(x.device)
    values: dict[str, float] = {}
    curve: tuple[float, ...] = ()
    for mode in ("deletion", "insertion"):
        if mode in metrics:
            points = causal_curve(score, x, relevance, mode, steps, batch_size)
            values[mode] = auc(points)
            if mode == "deletion":
                curve = tuple(float(v) for v in points)
    if "road" in metrics:
        morf, lerf = road_images(x, relevance, road_percentiles, road_noise, torch.Generator().manual_seed(seed))
        base = float(score(x)[0])
        changes = score(torch.cat([morf, lerf]).to(x.dtype)) - base
        values["road"] = float((changes[len(morf):].mean() - changes[: len(morf)].mean()) / 2)
    if "average_drop" in metrics or "increase_in_confidence" in metrics:
        both = score(torch.cat([x, x * scaled_to_unit(relevance)]))
        before, after = float(both[0]), float(both[1])
        if "average_drop" in metrics:
            values["average_drop"] = 100 * max(0.0, before - after) / before if before > 0 else 0.0
        if "increase_in_confidence" in metrics:
            values["increase_in_confidence"] = 100.0 * (after > before)
    return Faithfulness(values, curve)


def ranking(table: dict[str, dict[str, float]]) -> list[tuple[str, float]]:
    """Methods ordered by their mean rank over the metrics they all have (1 = best on a metric,
    ties share the mean rank): [(method, mean rank)], best first."""
    methods = list(table)
    metrics = [m for m in METRICS if all(m in table[k] for k in methods)]
    ranks = {k: [] for k in methods}
    for metric in metrics:
        sign = -1 if HIGHER_IS_BETTER[metric] else 1
        values = sorted(sign * table[k][metric] for k in methods)
        for k in methods:
            v = sign * table[k][metric]
            positions = [i + 1 for i, w in enumerate(values) if w == v]
            ranks[k].append(sum(positions) / len(positions))
    mean = {k: (sum(r) / len(r) if r else float("nan")) for k, r in ranks.items()}
    return sorted(mean.items(), key=lambda item: item[1])
