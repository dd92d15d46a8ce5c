"""DeepDream in the live window (toolbox.app.dream_plugin), without a display.

Dreams use tiny settings (1 octave, a few steps, a shallow layer) on skimage frames cut to 176x144
(the demo clip's size), so each takes a fraction of a second on a CPU.
"""
from __future__ import annotations

import dataclasses
import threading
import time

import cv2
import numpy as np
import pytest

import toolbox.app.live as live_module
from toolbox.app.dream_plugin import (DREAM_TASK, LAYER, LIVE_MODE, LIVE_TASK, PRESET, REQUEST, VIEW, LiveDream,
                                      dream_settings, install_dream, view_open)
from toolbox.app.keys import load_key_table
from toolbox.app.live import LiveApp, LiveOptions, layer_shapes
from toolbox.app.state import AppState, LiveContext, reduce
from toolbox.app.tasks import TaskRunner
from toolbox.app.threads import Captured, LatestSlot
from toolbox.config import DreamConfig, load_config
from toolbox.render.panes import fit_image
from toolbox.sources import open_source
from toolbox.sources.frame import Frame

TINY = DreamConfig(preset="classic", steps=3, octaves=1, max_side=176, live_steps=1, live_max_side=128)
LAYER_NAME = "_blocks.2"  # 24 x 56 x 56: shallow, a dream step takes ~10 ms at 176x144
MOSAIC = (640, 640)


@pytest.fixture(scope="module")
def shapes(lite0):
    return layer_shapes(lite0, lite0.layers)


@pytest.fixture(scope="module")
def frame(cat_bgr) -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(cat_bgr, (176, 144), interpolation=cv2.INTER_AREA))


def context(shapes) -> LiveContext:
    return LiveContext(shapes, MOSAIC)


def state_at(shapes, layer: str = LAYER_NAME, **changes) -> AppState:
    return AppState(layer=[s.name for s in shapes].index(layer), **changes)


class RecordingRunner(TaskRunner):
    """A TaskRunner that records every progress report as (task name, fraction)."""

    def __init__(self):
        super().__init__()
        self.reports: list[tuple[str, float]] = []

    def start(self, name, fn, label="", cancellable=True):
        def spy(task):
            report = task.report
            task.report = lambda fraction, text=None: (self.reports.append((name, fraction)), report(fraction, text))
            return fn(task)

        return super().start(name, spy, label, cancellable)


def make_dream(lite0, shapes, tmp_path, config=TINY) -> LiveDream:
    return LiveDream(lite0, shapes, RecordingRunner(), config, LatestSlot(), tmp_path / "snaps", MOSAIC)


class FakeResult:
    """What the stage reads of a LiveResult: the captured frame."""

    def __init__(self, image: np.ndarray, index: int = 0):
        self.captured = Captured(Frame(image, index, index / 30), time.perf_counter())


# --- key actions -------------------------------------------------------------------------------------

def test_the_key_table_binds_the_four_dream_actions():
    table = load_key_table("keys.yaml")
    assert [table.action_for(ord(k)) for k in "dve;"] == ["dream_frame", "dream_live", "dream_preset", "dream_layer"]


def test_dream_key_requests_a_dream_and_opens_the_view_and_again_closes_it(shapes):
    start = state_at(shapes, channel=3)
    opened = reduce(start, "dream_frame", context(shapes))
    assert opened.state.extras[REQUEST] == 1 and view_open(opened.state)
    assert [e.kind for e in opened.effects] == ["message"]
    closed = reduce(opened.state, "dream_frame", context(shapes)).state
    assert not view_open(closed) and closed.extras[REQUEST] == 1  # closing starts nothing
    again = reduce(closed, "dream_frame", context(shapes)).state
    assert again.extras[REQUEST] == 2 and view_open(again)


@pytest.mark.parametrize("action", ["next_layer", "prev_layer", "channel_right", "channel_down_fast"])
def test_any_navigation_returns_to_the_normal_view(shapes, action):
    opened = reduce(state_at(shapes, channel=5), "dream_frame", context(shapes)).state
    assert not view_open(reduce(opened, action, context(shapes)).state)


def test_live_key_toggles_the_dream_mode(shapes):
    on = reduce(state_at(shapes), "dream_live", context(shapes)).state
    assert on.mode == LIVE_MODE
    assert reduce(on, "dream_live", context(shapes)).state.mode == "live"


def test_preset_key_cycles_classic_and_tf_tutorial(shapes):
    state = state_at(shapes, extras={PRESET: "classic"})
    names = []
    for _ in range(3):
        state = reduce(state, "dream_preset", context(shapes)).state
        names.append(state.extras[PRESET])
    assert names == ["tf-tutorial", "classic", "tf-tutorial"]


def test_dream_layer_follows_the_selection_until_pinned(lite0, shapes, tmp_path):
    dreams = make_dream(lite0, shapes, tmp_path)
    state = state_at(shapes, "_blocks.2")
    assert dreams.settings_for(state)[0].terms[0].layer == "_blocks.2"
    pinned = reduce(state, "dream_layer", context(shapes)).state
    moved = reduce(reduce(pinned, "next_layer", context(shapes)).state, "next_layer", context(shapes)).state
    assert moved.extras[LAYER] == state.layer and moved.layer == state.layer + 2
    assert dreams.settings_for(moved)[0].terms[0].layer == "_blocks.2"
    followed = reduce(moved, "dream_layer", context(shapes)).state
    assert dreams.settings_for(followed)[0].terms[0].layer == "_blocks.4"


def test_settings_take_the_configured_steps_and_octaves_over_the_preset():
    settings = dream_settings(TINY, "tf-tutorial", "_blocks.2")
    assert (settings.steps, settings.octaves, settings.term) == (3, 1, "mean")
    full = dream_settings(dataclasses.replace(TINY, steps=None, octaves=None), "classic", "_blocks.2")
    assert (full.steps, full.octaves) == (10, 4)


# --- the plugin ----------------------------------------------------------------------------------------

def test_a_requested_dream_reports_progress_finishes_is_shown_and_saved_under_a_unique_name(
        lite0, shapes, tmp_path, frame):
    dreams = make_dream(lite0, shapes, tmp_path, dataclasses.replace(TINY, steps=6))
    state = reduce(state_at(shapes), "dream_frame", context(shapes)).state
    dreams.stage(FakeResult(frame), state)
    handle = dreams.tasks.latest(DREAM_TASK)
    handle.join(30)
    assert handle.status == "done", handle.error
    assert dreams.tasks.reports and all(name == DREAM_TASK for name, _ in dreams.tasks.reports)
    assert 0 < dreams.tasks.reports[0][1] <= 1 and handle.progress == 1.0
    saved = cv2.imread(str(handle.result))
    assert handle.result == tmp_path / "snaps" / "dream-0000.png"
    assert saved.shape == frame.shape and np.abs(saved.astype(int) - frame).mean() > 2  # it dreamed
    pane = dreams.pane(None, state)
    expected = fit_image(saved, *MOSAIC, interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(pane[40:], expected[40:])  # below the caption: the saved dream
    # the next dream gets the next name; the first file is untouched
    dreams.stage(FakeResult(frame), reduce(reduce(state, "dream_frame", context(shapes)).state,
                                           "dream_frame", context(shapes)).state)
    dreams.tasks.latest(DREAM_TASK).join(30)
    assert sorted(p.name for p in (tmp_path / "snaps").iterdir()) == ["dream-0000.png", "dream-0001.png"]
    assert np.array_equal(cv2.imread(str(tmp_path / "snaps" / "dream-0000.png")), saved)
    # a navigation key gives the mosaic back
    assert dreams.pane(None, reduce(state, "next_layer", context(shapes)).state) is None
    dreams.close()


def test_cancel_stops_a_long_dream_within_a_step_and_saves_nothing(lite0, shapes, tmp_path, frame):
    dreams = make_dream(lite0, shapes, tmp_path, dataclasses.replace(TINY, steps=5000))
    state = reduce(state_at(shapes), "dream_frame", context(shapes)).state
    dreams.stage(FakeResult(frame), state)
    handle = dreams.tasks.latest(DREAM_TASK)
    deadline = time.monotonic() + 20
    while handle.progress == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert 0 < handle.progress < 0.5 and dreams.tasks.busy
    assert dreams.tasks.cancel() == 1  # what Esc does
    cancelled_at = time.monotonic()
    handle.join(5)
    assert time.monotonic() - cancelled_at < 1.0 and handle.status == "cancelled"
    assert not (tmp_path / "snaps").exists() or not list((tmp_path / "snaps").iterdir())
    assert dreams.shot.cancelled and dreams.shot.path is None
    dreams.close()


def test_live_dream_dreams_new_frames_reports_an_fps_and_stops_with_the_mode(lite0, shapes, tmp_path, frame):
    dreams = make_dream(lite0, shapes, tmp_path)
    live = reduce(state_at(shapes), "dream_live", context(shapes)).state
    dreams.stage(FakeResult(frame), live)
    handle = dreams.tasks.latest(LIVE_TASK)
    assert handle.running and not handle.cancellable  # no progress bar; Esc keeps quitting
    deadline = time.monotonic() + 20
    index = 0
    while dreams.live_frames < 4 and time.monotonic() < deadline:
        index += 1  # a picture panning right by 2 px per frame
        dreams.frames.put(Captured(Frame(np.ascontiguousarray(np.roll(frame, 2 * index, axis=1)), index, 0.0),
                                   time.perf_counter()))
        time.sleep(0.03)
    assert dreams.live_frames >= 4 and dreams.live.fps > 0
    assert dreams.live.image.shape == frame.shape
    assert dreams.status_flag(live).endswith("fps")
    pane = dreams.pane(None, live)
    assert pane.shape == (*MOSAIC, 3) and pane[40:].std() > 10
    dreams.stage(FakeResult(frame), reduce(live, "dream_live", context(shapes)).state)
    handle.join(5)
    assert handle.status == "cancelled" and dreams.live is None
    dreams.close()


def test_a_live_dream_frame_differs_from_its_input_and_is_seeded_by_the_previous_dream(lite0, shapes, tmp_path,
                                                                                        frame):
    dreams = make_dream(lite0, shapes, tmp_path)
    dreams.start_live(dreams.settings_for(state_at(shapes))[0])
    outs = []
    for index in range(1, 4):  # the same still frame three times: the dream accumulates
        dreams.frames.put(Captured(Frame(frame, index, 0.0), time.perf_counter()))
        deadline = time.monotonic() + 10
        while dreams.live_frames < index and time.monotonic() < deadline:
            time.sleep(0.01)
        outs.append(dreams.live.image.astype(int))
    dreams.stop_live()
    dreams.tasks.latest(LIVE_TASK).join(5)
    first, third = (np.abs(o - frame).mean() for o in (outs[0], outs[2]))
    assert 0 < first < third  # seeded by the previous dream, not by the raw frame each time
    dreams.close()


# --- the whole loop with a stand-in window -----------------------------------------------------------

class ConditionWindow:
    """Stands in for the OpenCV window: each script entry is (condition, key); the key is pressed once
    the condition holds. Gives up (presses q) after ``timeout`` seconds."""

    script: list = []
    timeout = 60.0

    def __init__(self, title: str):
        self.images: list[np.ndarray] = []
        self.steps = list(self.script)
        self.start = time.monotonic()
        self.closed = False

    def show(self, image: np.ndarray) -> None:
        self.images.append(image)

    def poll_key(self, wait_ms: int = 1) -> int:
        time.sleep(0.005)
        if time.monotonic() - self.start > self.timeout:
            return ord("q")
        if self.steps and self.steps[0][0](self):
            return self.steps.pop(0)[1]
        return -1

    def close(self) -> None:
        pass


def test_the_dream_key_in_the_running_app_shows_the_dream_in_the_mosaic_pane_and_saves_it(
        lite0, tmp_path, monkeypatch):
    config = load_config(overrides={"live.snapshot_dir": str(tmp_path), "dream.steps": 3, "dream.octaves": 1})
    saved = tmp_path / "dream-0000.png"
    shown_at = {}

    def dream_on_screen(window) -> bool:
        if not saved.exists():
            return False
        rect = config.layout.panes["mosaic"]
        expected = fit_image(cv2.imread(str(saved)), rect.h, rect.w, interpolation=cv2.INTER_LINEAR)
        pane = window.images[-1][rect.y + 40 : rect.y + rect.h, rect.x : rect.x + rect.w]
        shown_at.setdefault("n", len(window.images)) if np.array_equal(pane, expected[40:]) else None
        return "n" in shown_at

    ConditionWindow.script = [(lambda w: len(w.images) > 5, ord(" ")),  # freeze: the dreamed frame stays
                              (lambda w: len(w.images) > 8, ord("d")),
                              (dream_on_screen, ord("q"))]
    monkeypatch.setattr(live_module, "Window", ConditionWindow)
    app = LiveApp(open_source("demo", loop=True), lite0, config, LAYER_NAME, LiveOptions(plugins=[install_dream]))
    assert app.run() == 0
    assert "n" in shown_at, "the dream never appeared in the mosaic pane"
    assert app.state.extras[PRESET] == "classic" and app.state.extras[VIEW] == (app.state.layer, 0)
    assert list(tmp_path.glob("dream-*.png")) == [saved]


def test_live_dream_mode_in_the_running_app_dreams_frames_and_ends_with_the_app(lite0, tmp_path, monkeypatch):
    config = load_config(overrides={"live.snapshot_dir": str(tmp_path), "dream.live_max_side": 128})
    ConditionWindow.script = [(lambda w: len(w.images) > 5, ord("v")),
                              (lambda w: w.app.dream.live_frames >= 3, ord("q"))]
    monkeypatch.setattr(live_module, "Window", ConditionWindow)
    app = LiveApp(open_source("demo", loop=True), lite0, config, LAYER_NAME, LiveOptions(plugins=[install_dream]))
    ConditionWindow.app = app
    before = threading.active_count()
    assert app.run() == 0
    assert app.state.mode == LIVE_MODE and app.dream.live_frames >= 3 and app.dream.live.fps > 0
    assert not app.tasks.latest(LIVE_TASK).running  # Esc does not cancel it, but quitting ends it
    assert threading.active_count() <= before
