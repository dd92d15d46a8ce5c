"""The running top-9 tracker and the receptive-field crops it keeps."""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolbox.analysis.top_patches import TopPatches, boxes_overlap
from toolbox.models.receptive_field import ReceptiveField

FIELD = ReceptiveField(size=(5, 5), stride=(2, 2), offset=(-2, -2))


def _view(index: int, size: int = 16) -> np.ndarray:
    """A frame whose pixels encode (frame, y, x), so any crop says where it came from."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([np.full_like(y, index), y, x], axis=-1).astype(np.uint8)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=3 * 4 * 4, max_size=3 * 4 * 4),
                min_size=1, max_size=30),
       st.integers(1, 9))
def test_tracker_keeps_exactly_the_true_top_k_of_a_random_stream(frames, k):
    tracker = TopPatches(FIELD, channels=3, k=k)
    maxima = []  # per frame, per channel: (value, frame, flat location)
    for n, values in enumerate(frames):
        act = torch.tensor(values, dtype=torch.float32).view(3, 4, 4)
        tracker.update(_view(n), act, frame_index=n)
        best, where = act.flatten(1).max(dim=1)
        maxima.append([(float(best[c]), n, int(where[c])) for c in range(3)])
    for c in range(3):
        # Stable sort by value, best first: on ties the earlier frame is kept, as the tracker does.
        expected = sorted((m[c] for m in maxima), key=lambda t: -t[0])[:k]
        got = tracker.patches(c)
        assert [(p.value, p.frame_index, p.location[0] * 4 + p.location[1]) for p in got] == expected
        assert tracker.values()[c, : len(got)].tolist() == [p.value for p in got]
        for p in got:  # the crop is the frame's receptive-field window of that unit
            y0, x0, y1, x1 = p.box
            assert np.array_equal(p.image, _view(p.frame_index)[y0:y1, x0:x1])


def test_crop_is_the_receptive_field_window_clipped_at_the_borders():
    tracker = TopPatches(FIELD, channels=2, k=1)
    act = torch.zeros(2, 8, 8)
    act[0, 0, 0] = 5.0  # corner unit: window rows -2..3 -> clipped to 0..3
    act[1, 3, 4] = 5.0  # interior unit: rows 4..9, cols 6..11
    tracker.update(_view(7), act, frame_index=7)
    corner, inner = tracker.patches(0)[0], tracker.patches(1)[0]
    assert corner.box == (0, 0, 3, 3) and corner.image.shape == (3, 3, 3)
    assert inner.box == (4, 6, 9, 11) and inner.image.shape == (5, 5, 3)
    assert inner.image[0, 0].tolist() == [7, 4, 6]  # frame 7, pixel (y=4, x=6)
    edge = TopPatches(FIELD, channels=1, k=1)
    act = torch.zeros(1, 8, 8)
    act[0, 7, 7] = 1.0  # rows 12..17 on a 16-px view -> 12..16
    edge.update(_view(0), act)
    assert edge.patches(0)[0].box == (12, 12, 16, 16)


def test_reset_forgets_everything_and_summary_is_json_ready():
    import json

    tracker = TopPatches(FIELD, channels=2, k=3)
    for n in range(4):
        tracker.update(_view(n), torch.full((2, 8, 8), float(n)), frame_index=n)
    summary = tracker.summary()
    json.dumps(summary)
    assert summary["frames_seen"] == 4 and [m["frame"] for m in summary["channels"][0]["maxima"]] == [3, 2, 1]
    tracker.reset()
    assert tracker.patches(0) == [] and tracker.frames_seen == 0


def test_only_improving_channels_are_touched():
    tracker = TopPatches(FIELD, channels=4, k=1)
    tracker.update(_view(0), torch.ones(4, 8, 8))
    act = torch.zeros(4, 8, 8)
    act[2, 1, 1] = 9.0
    assert tracker.update(_view(1), act) == 1


def _overlapping_same_frame_pairs(patches) -> int:
    return sum(a.frame_index == b.frame_index and boxes_overlap(a.box, b.box)
               for n, a in enumerate(patches) for b in patches[n + 1:])


def test_a_frame_offered_again_adds_no_copy_of_its_patch():
    """A looping folder repeats its frames under the same index: the top-9 holds distinct places,
    never two overlapping crops of one frame (the same eye twice)."""
    tracker = TopPatches(FIELD, channels=2, k=9)
    acts = [torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(n)) for n in range(3)]
    for _ in range(7):
        for n, act in enumerate(acts):  # a folder of three images, looping
            tracker.update(_view(n), act, frame_index=n)
    for c in range(2):
        patches = tracker.patches(c)
        assert len(patches) > 3 and {p.frame_index for p in patches} == {0, 1, 2}  # more than one place per image
        assert _overlapping_same_frame_pairs(patches) == 0
        values = [p.value for p in patches]
        assert values == sorted(values, reverse=True)
    assert tracker.update(_view(0), acts[0], frame_index=0) == 0


def test_a_still_image_fills_the_top_k_with_its_strongest_separate_places():
    """One image offered again and again: each offer adds the strongest place whose crop overlaps none
    kept so far (a greedy non-maximum suppression), until the row is full or no free place is left."""
    field = ReceptiveField(size=(3, 3), stride=(4, 4), offset=(0, 0))  # crops never overlap
    act = torch.arange(36, dtype=torch.float32).reshape(1, 6, 6)
    tracker = TopPatches(field, channels=1, k=9)
    for _ in range(12):
        tracker.update(_view(0, size=24), act, frame_index=0)
    patches = tracker.patches(0)
    assert [p.value for p in patches] == list(range(35, 26, -1))  # the nine largest, each once
    assert len({p.location for p in patches}) == 9 and _overlapping_same_frame_pairs(patches) == 0
    wide = TopPatches(ReceptiveField(size=(9, 9), stride=(4, 4), offset=(0, 0)), channels=1, k=9)
    for _ in range(12):
        wide.update(_view(0, size=24), act, frame_index=0)
    kept = wide.patches(0)
    assert 1 < len(kept) < 9 and _overlapping_same_frame_pairs(kept) == 0  # the field leaves room for fewer
