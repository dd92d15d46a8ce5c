"""Inversion (I) and stylise (Y) in the live window (toolbox.app.style_plugin), without a display.

Tiny settings (a shallow layer, a few steps, frames of 176x144 or less) keep each run under a second.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from toolbox.app.keys import load_key_table
from toolbox.app.live import layer_shapes
from toolbox.app.state import AppState, LiveContext, reduce
from toolbox.app.style_plugin import (INVERT_TASK, REQUEST, STYLE, STYLE_MODE, STYLE_TASK, STYLES, LiveStyle,
                                      style_images, view_open)
from toolbox.app.threads import Captured, LatestSlot
from toolbox.config import StyleConfig
from toolbox.sources.frame import Frame
from test_app_dream import FakeResult, RecordingRunner

TINY = StyleConfig(styles_dir="", invert_steps=8, invert_max_side=64, steps=4, live_steps=1, live_max_side=64)
LAYER_NAME = "_blocks.2"
MOSAIC = (320, 320)


@pytest.fixture(scope="module")
def shapes(lite0):
    return layer_shapes(lite0, lite0.layers)


@pytest.fixture(scope="module")
def frame(cat_bgr) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(cat_bgr, (88, 72), interpolation=cv2.INTER_AREA))


def context(shapes) -> LiveContext:
    return LiveContext(shapes, MOSAIC)


def state_at(shapes, **changes) -> AppState:
    return AppState(layer=[s.name for s in shapes].index(LAYER_NAME), **changes)


def make_style(lite0, shapes, tmp_path, config=TINY) -> LiveStyle:
    return LiveStyle(lite0, shapes, RecordingRunner(), config, LatestSlot(), tmp_path / "snaps", MOSAIC)


def test_the_key_table_binds_shift_i_and_shift_y():
    table = load_key_table("keys.yaml")
    assert [table.action_for(ord(k)) for k in "IY"] == ["invert_frame", "style_live"]


def test_the_shipped_styles_are_found():
    assert [p.stem for p in style_images("")] == ["stained-glass", "strokes", "waves"]


def test_y_cycles_the_styles_then_turns_off(shapes):
    state = state_at(shapes, extras={STYLES: ("a", "b")})
    seen = []
    for _ in range(3):
        state = reduce(state, "style_live", context(shapes)).state
        seen.append((state.mode, state.extras.get(STYLE)))
    assert seen == [(STYLE_MODE, 0), (STYLE_MODE, 1), ("live", None)]


def test_y_with_an_empty_style_folder_says_so_and_changes_nothing(shapes, tmp_path):
    assert style_images(tmp_path) == []
    state = state_at(shapes, extras={STYLES: ()})
    out = reduce(state, "style_live", context(shapes))
    assert out.state.mode == "live" and "no style images" in out.effects[0].text


def test_i_inverts_in_the_background_shows_a_pane_that_differs_from_the_input_and_saves_it(
        lite0, shapes, tmp_path, frame):
    style = make_style(lite0, shapes, tmp_path)
    state = reduce(state_at(shapes), "invert_frame", context(shapes)).state
    assert view_open(state) and state.extras[REQUEST] == 1
    style.stage(FakeResult(frame), state)
    handle = style.tasks.latest(INVERT_TASK)
    handle.join(60)
    assert handle.status == "done", handle.error
    assert handle.result == tmp_path / "snaps" / "invert-0000.png" and handle.progress == 1.0
    saved = cv2.imread(str(handle.result))
    assert saved.shape[:2] == (52, 64)  # shrunk to invert_max_side
    pane = style.pane(None, state)
    input_pane = cv2.resize(frame, MOSAIC[::-1])
    assert pane.shape == (*MOSAIC, 3) and np.abs(pane[40:].astype(int) - input_pane[40:]).mean() > 10
    assert style.pane(None, reduce(state, "next_layer", context(shapes)).state) is None


def test_a_failed_inversion_is_named_in_the_pane_and_the_status_line_while_its_view_is_open(
        lite0, shapes, tmp_path, frame):
    style = make_style(lite0, shapes, tmp_path)
    state = reduce(state_at(shapes), "invert_frame", context(shapes)).state
    style.start_invert(frame, "no_such_layer", request=1)
    style.tasks.latest(INVERT_TASK).join(30)
    assert style.tasks.latest(INVERT_TASK).status == "failed" and "no_such_layer" in style.shot.error
    assert style.status_flag(state) == f"inversion failed: {style.shot.error}"
    assert style.status_flag(reduce(state, "next_layer", context(shapes)).state) is None
    assert style.shot_view(style.shot) == (style.shot.source, f"inversion failed: {style.shot.error}")


def test_esc_cancels_an_inversion_within_one_step(lite0, shapes, tmp_path, frame):
    import dataclasses

    style = make_style(lite0, shapes, tmp_path, dataclasses.replace(TINY, invert_steps=5000))
    state = reduce(state_at(shapes), "invert_frame", context(shapes)).state
    style.stage(FakeResult(frame), state)
    handle = style.tasks.latest(INVERT_TASK)
    deadline = time.monotonic() + 30
    while handle.progress == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    steps_seen = handle.progress * 5000
    assert 0 < handle.progress < 0.5
    assert style.tasks.cancel() == 1  # what Esc does
    cancelled_at = time.monotonic()
    handle.join(5)
    assert handle.status == "cancelled"
    # within one step: a step here is a few ms; allow a generous multiple on a busy machine
    assert time.monotonic() - cancelled_at < 1.0, steps_seen
    assert style.shot.cancelled and style.shot.path is None
    assert not (tmp_path / "snaps").exists() or not list((tmp_path / "snaps").iterdir())


def test_y_stylises_new_frames_differently_from_the_input_shows_its_rate_and_stops(lite0, shapes, tmp_path, frame):
    style = make_style(lite0, shapes, tmp_path)
    state = reduce(state_at(shapes, extras={STYLES: ("stained-glass", "strokes", "waves")}), "style_live",
                   context(shapes)).state
    style.stage(FakeResult(frame), state)
    handle = style.tasks.latest(STYLE_TASK)
    assert handle.running and not handle.cancellable
    deadline = time.monotonic() + 60
    index = 0
    while style.live_frames < 3 and time.monotonic() < deadline:
        index += 1
        style.frames.put(Captured(Frame(np.ascontiguousarray(np.roll(frame, 2 * index, axis=1)), index, 0.0),
                                  time.perf_counter()))
        time.sleep(0.05)
    assert style.live_frames >= 3 and style.live.fps > 0 and style.live.label == "stained-glass"
    assert style.live.image.shape == frame.shape
    assert np.abs(style.live.image.astype(int) - frame).mean() > 5  # stylised, not the frame
    assert style.status_flag(state).endswith("fps")
    assert style.pane(None, state).shape == (*MOSAIC, 3)
    off = reduce(reduce(reduce(state, "style_live", context(shapes)).state, "style_live", context(shapes)).state,
                 "style_live", context(shapes)).state
    assert off.mode == "live"
    style.stage(FakeResult(frame), off)
    handle.join(10)
    assert not handle.running and style.live is None
