"""The pure parts of the video report: shot boundaries from deep features, per-frame statistics,
and top patches merged from segments."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics.pairwise import cosine_distances

from toolbox.analysis.frame_stats import (dominant_class, most_active_channels, most_confident_frame, rows_normalised,
                                          timeline_classes)
from toolbox.analysis.shots import (Shot, adaptive_threshold, consecutive_cosine_distances, pooled_features,
                                    detect_shot_starts, shots_from_starts)
from toolbox.analysis.top_patches import TopPatches
from toolbox.models.receptive_field import ReceptiveField


def noisy_shots(lengths: list[int], dim: int = 64, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """Features of consecutive shots: per shot one random non-negative direction plus noise per frame."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in lengths:
        centre = rng.random(dim)
        rows.append(centre + noise * rng.standard_normal((n, dim)))
    return np.concatenate(rows)


def test_consecutive_cosine_distances_match_sklearn():
    features = np.random.default_rng(1).standard_normal((12, 7))
    expected = np.diag(cosine_distances(features[:-1], features[1:]))
    np.testing.assert_allclose(consecutive_cosine_distances(features), expected, atol=1e-12)


def test_an_all_zero_feature_vector_is_at_distance_one_and_short_sequences_have_none():
    features = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(consecutive_cosine_distances(features), [1.0, 1.0])
    assert consecutive_cosine_distances(features[:1]).shape == (0,)


def test_adaptive_threshold_is_median_plus_k_robust_deviations_but_never_below_the_floor():
    d = np.array([0.01, 0.02, 0.03, 0.02, 0.5])
    median, mad = 0.02, 0.01
    assert adaptive_threshold(d, k=6, floor=0.0) == pytest.approx(median + 6 * 1.4826 * mad)
    assert adaptive_threshold(d, k=6, floor=0.3) == 0.3
    assert adaptive_threshold(np.zeros(0), floor=0.2) == 0.2


def test_shot_starts_finds_every_cut_and_nothing_in_noise():
    features = noisy_shots([15, 9, 22])
    assert detect_shot_starts(features) == [0, 15, 24]
    assert detect_shot_starts(noisy_shots([40])) == [0]
    assert detect_shot_starts(np.zeros((0, 3))) == []


def test_a_cut_with_raised_neighbours_is_reported_once():
    d_features = np.array([[1, 0, 0], [1, 0, 0], [1, 0.6, 0], [0, 1, 0], [0, 1, 0.6], [0, 1, 0]], float)
    assert detect_shot_starts(d_features, floor=0.05) == [0, 3]


def test_shots_from_starts_cover_the_sequence_without_overlap():
    shots = shots_from_starts([0, 4, 9], 12)
    assert shots == [Shot(0, 3), Shot(4, 8), Shot(9, 11)]
    assert [p for s in shots for p in s.positions] == list(range(12))


def test_pooled_features_are_the_spatial_mean():
    act = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    np.testing.assert_allclose(pooled_features(act), [5.5, 17.5])


def test_timeline_classes_are_those_ever_in_the_top_3_by_peak():
    p = np.array([[0.5, 0.3, 0.1, 0.05, 0.05, 0.0],
                  [0.1, 0.2, 0.0, 0.0, 0.3, 0.4]])
    assert timeline_classes(p, 3) == [0, 5, 1, 4, 2]
    assert timeline_classes(np.zeros((0, 4))) == []


def test_dominant_class_counts_top1_frames_and_breaks_ties_by_mean():
    p = np.array([[0.6, 0.4], [0.4, 0.6], [0.9, 0.1], [0.45, 0.55]])
    assert dominant_class(p, Shot(0, 2)) == 0
    assert dominant_class(p, Shot(1, 3)) == 1
    assert dominant_class(p, Shot(0, 1)) == 0  # one frame each and equal means: the lower class index
    assert most_confident_frame(p, Shot(1, 3)) == 2


def test_rows_normalised_maps_each_row_to_unit_range_and_constant_rows_to_zero():
    m = np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])
    np.testing.assert_allclose(rows_normalised(m), [[0, 1, 0.5], [0, 0, 0]])


def test_most_active_channels_rank_by_mean_over_time():
    means = np.array([[1.0, 5.0, 3.0], [1.0, 0.0, 3.0]])
    assert most_active_channels(means, 2) == [2, 1]


FIELD = ReceptiveField(size=(3, 3), stride=(2, 2), offset=(-1, -1))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=6, max_size=20), st.integers(1, 5), st.integers(1, 5))
def test_top_patches_merged_from_segments_equal_one_pass(levels, k, cut_every):
    """Quantised values make ties common: merging must keep the earlier frame as one pass does."""
    rng = np.random.default_rng(len(levels))
    acts = [torch.tensor(rng.integers(0, 3, (2, 3, 3)) + lv, dtype=torch.float32) for lv in levels]
    view = np.zeros((8, 8, 3), np.uint8)
    whole = TopPatches(FIELD, 2, k)
    for n, act in enumerate(acts):
        whole.update(view, act, n)
    parts = []
    for start in range(0, len(acts), cut_every):
        part = TopPatches(FIELD, 2, k)
        for n in range(start, min(start + cut_every, len(acts))):
            part.update(view, acts[n], n)
        parts.append(part.per_channel())
    merged = TopPatches.merged(FIELD, parts, len(acts), k)
    assert merged.summary() == whole.summary()
    assert torch.equal(merged.values(), whole.values())
