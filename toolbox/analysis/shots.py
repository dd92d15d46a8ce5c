"""Shot boundaries from deep features: a cut is a frame whose penultimate-layer features turn away
sharply from the previous frame's.

The features of a frame are the spatial mean of the deepest visualisable layer ((C, H, W) -> (C,)),
which for the usual classifier is the vector the final linear layer reads. Consecutive frames of one
shot stay close in that space even under noise and motion; a hard cut moves it far.

Threshold (adaptive, per video): ``max(floor, median + k * 1.4826 * MAD)`` of the consecutive cosine
distances, i.e. k robust standard deviations above the typical frame-to-frame change, never below an
absolute floor (a still video with tiny distances must not be cut at its noise). A boundary must also
be a local peak, so one cut is reported once even when its neighbours are raised too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

THRESHOLD_K = 6.0  # robust standard deviations above the median frame-to-frame change
THRESHOLD_FLOOR = 0.1  # cosine distance: below this nothing counts as a cut


def pooled_features(activation: torch.Tensor) -> np.ndarray:
    """(C, H, W) activation -> (C,) float32: the spatial mean (global average pooling)."""
    return activation.float().mean(dim=(-2, -1)).cpu().numpy().astype(np.float32)


def consecutive_cosine_distances(features: np.ndarray) -> np.ndarray:
    """(T, D) features -> (T-1,) float64 cosine distances ``1 - cos(f[t-1], f[t])`` in [0, 2];
    an all-zero vector is at distance 1 from everything."""
    f = np.asarray(features, np.float64)
    if len(f) < 2:
        return np.zeros(0)
    norms = np.linalg.norm(f, axis=1)
    dots = np.einsum("td,td->t", f[:-1], f[1:])
    denominator = norms[:-1] * norms[1:]
    cosine = np.divide(dots, denominator, out=np.zeros_like(dots), where=denominator > 0)
    return np.clip(1.0 - cosine, 0.0, 2.0)


def adaptive_threshold(distances: np.ndarray, k: float = THRESHOLD_K, floor: float = THRESHOLD_FLOOR) -> float:
    """``max(floor, median + k * 1.4826 * MAD)`` of ``distances`` (floor when there are none)."""
    if len(distances) == 0:
        return floor
    median = float(np.median(distances))
    mad = float(np.median(np.abs(distances - median)))
    return max(floor, median + k * 1.4826 * mad)


def shot_starts(distances: np.ndarray, threshold: float) -> list[int]:
    """(T-1,) consecutive feature distances of T frames -> positions (0..T-1) where a shot starts,
    beginning with 0. Position t starts a shot when the distance from t-1 to t exceeds
    ``threshold`` and is at least its left neighbour and above its right one (one cut, one start)."""
    starts = [0]
    for i, d in enumerate(distances):
        left = distances[i - 1] if i > 0 else -np.inf
        right = distances[i + 1] if i + 1 < len(distances) else -np.inf
        if d > threshold and d >= left and d > right:
            starts.append(i + 1)
    return starts


def detect_shot_starts(features: np.ndarray, k: float = THRESHOLD_K, floor: float = THRESHOLD_FLOOR) -> list[int]:
    """(T, D) features of consecutive frames -> shot start positions with the adaptive threshold
    ([] for no frames)."""
    if len(features) == 0:
        return []
    distances = consecutive_cosine_distances(features)
    return shot_starts(distances, adaptive_threshold(distances, k, floor))


@dataclass(frozen=True)
class Shot:
    """Frames ``first``..``last`` (positions in the analysed sequence, inclusive)."""

    first: int
    last: int

    @property
    def positions(self) -> range:
        return range(self.first, self.last + 1)


def shots_from_starts(starts: list[int], count: int) -> list[Shot]:
    """Shot start positions (ascending, from 0) and the frame count -> contiguous shots covering all."""
    ends = [s - 1 for s in starts[1:]] + [count - 1]
    return [Shot(s, e) for s, e in zip(starts, ends)]
