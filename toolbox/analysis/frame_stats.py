"""Statistics over the frames of one video: which classes matter, which frame speaks for a shot,
which channels are most active. Pure numpy on the per-frame series a job collects.

Series shapes: probabilities (T, K) float in [0, 1] (softmax per frame), channel means (T, C),
layer means (T, L); T frames in analysis order.
"""
from __future__ import annotations

import numpy as np

from toolbox.analysis.shots import Shot


def timeline_classes(probabilities: np.ndarray, rank: int = 3) -> list[int]:
    """Classes that are among the ``rank`` most probable in at least one frame, ordered by their
    highest probability over time (most confident first)."""
    p = np.asarray(probabilities)
    if p.size == 0:
        return []
    rank = min(rank, p.shape[1])
    top = np.argpartition(-p, rank - 1, axis=1)[:, :rank]
    classes = np.unique(top)
    peaks = p[:, classes].max(axis=0)
    return [int(c) for c in classes[np.argsort(-peaks, kind="stable")]]


def dominant_class(probabilities: np.ndarray, shot: Shot) -> int:
    """The class that is top-1 in most frames of ``shot``; ties go to the higher mean probability."""
    p = np.asarray(probabilities)[shot.first : shot.last + 1]
    counts = np.bincount(p.argmax(axis=1), minlength=p.shape[1])
    best = np.flatnonzero(counts == counts.max())
    return int(best[np.argmax(p[:, best].mean(axis=0))])


def most_confident_frame(probabilities: np.ndarray, shot: Shot) -> int:
    """Position (in the whole sequence) of the frame of ``shot`` with the highest top-1 probability;
    the earliest one on ties."""
    p = np.asarray(probabilities)[shot.first : shot.last + 1]
    return shot.first + int(np.argmax(p.max(axis=1)))


def rows_normalised(matrix: np.ndarray) -> np.ndarray:
    """(R, T) -> (R, T) float64, each row mapped to [0, 1] by its own minimum and maximum; a constant
    row becomes 0 (nothing changes in it)."""
    m = np.asarray(matrix, np.float64)
    low = m.min(axis=1, keepdims=True)
    span = m.max(axis=1, keepdims=True) - low
    return np.divide(m - low, span, out=np.zeros_like(m), where=span > 0)


def most_active_channels(channel_means: np.ndarray, count: int) -> list[int]:
    """(T, C) per-frame channel means -> the ``count`` channels with the highest mean over time,
    most active first."""
    means = np.asarray(channel_means, np.float64).mean(axis=0)
    order = np.argsort(-means, kind="stable")
    return [int(c) for c in order[:count]]
