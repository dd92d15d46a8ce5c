"""Live / video dreaming: the dream follows the motion of the scene."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from toolbox.analysis.dream import LiveDreamer, live_settings, preset
from toolbox.analysis.dream.temporal import FlowWarper, temporal_seed


def shifted(image: np.ndarray, dx: int) -> np.ndarray:
    return np.ascontiguousarray(np.roll(image, dx, axis=1))


@pytest.fixture(scope="module")
def textured(cat_bgr):
    return cv2.resize(cat_bgr, (160, 104), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_warp_along_flow_follows_a_translation(textured, method):
    moved = shifted(textured, 4)
    warper = FlowWarper(method)
    flow = warper.flow(textured, moved)
    warped = warper.warp(textured, flow)
    inner = (slice(16, -16), slice(16, -16))
    error_warped = np.abs(warped[inner].astype(int) - moved[inner]).mean()
    error_static = np.abs(textured[inner].astype(int) - moved[inner]).mean()
    assert error_warped < 0.5 * error_static


def test_temporal_seed_carries_the_dream_with_the_motion(textured):
    hallucination = np.zeros_like(textured, dtype=np.int16)
    hallucination[40:60, 50:70] = 60  # a bright dreamed patch
    prev_dream = np.clip(textured + hallucination, 0, 255).astype(np.uint8)
    frame = shifted(textured, 6)
    seed = temporal_seed(frame, textured, prev_dream, FlowWarper("dis"), blend=1.0)
    gain = seed - frame.astype(np.float32)
    assert gain[44:56, 60:72].mean() > 25  # the patch moved right by 6 px
    assert gain[44:56, 50:54].mean() < gain[44:56, 60:72].mean() / 2


def test_live_dreamer_is_stable_on_a_still_scene_and_reports_rate(lite0, textured):
    dreamer = LiveDreamer(lite0, live_settings(preset("classic").with_layers(["_blocks.5"]), steps=2))
    try:
        outputs = [dreamer.step(textured) for _ in range(4)]
    finally:
        dreamer.close()
    assert all(o.shape == textured.shape for o in outputs)
    # The dream accumulates: each frame is further from the raw frame than the last ...
    dist = [np.abs(o.astype(int) - textured).mean() for o in outputs]
    assert dist[-1] > dist[0]
    # ... while consecutive frames change less than a fresh dream differs from the frame.
    assert np.abs(outputs[-1].astype(int) - outputs[-2]).mean() < dist[0]
    assert dreamer.fps > 0
