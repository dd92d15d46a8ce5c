"""The unit column and filter view of the live window (toolbox.app.units_plugin), without a display.

Unit images use tiny settings (32 px, a few steps) and a temporary cache, so each computes in well
under a second; the top-9 oracle is a TopPatches fed by hand with the same frames.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from toolbox.analysis.top_patches import TopPatches
from toolbox.analysis.unit_cache import UnitCache
from toolbox.analysis.unitvis import preset
from toolbox.app.compute import LiveCompute
from toolbox.app.keys import load_key_table
from toolbox.app.live import LiveApp, layer_shapes
from toolbox.app.state import AppState, LiveContext, reduce
from toolbox.app.tasks import TaskRunner
from toolbox.app.threads import Captured
from toolbox.app.units_plugin import FILTERS, LAYER_TASK, PRECOMPUTE, RESET, UNIT_TASK, LiveUnits
from toolbox.config import load_config
from toolbox.models.receptive_field import receptive_field
from toolbox.render.filters import filters_view, layer_conv_weight
from toolbox.render.panes import fit_image
from toolbox.render.unit_column import STALE, unit_column
from toolbox.sources import open_source
from toolbox.sources.frame import Frame

TINY = preset("lucid", size=32, steps=3)
SIDE, MOSAIC = (440, 320), (640, 640)
LAYER = "_blocks.10"  # 112 x 14 x 14


@pytest.fixture(scope="module")
def shapes(lite0):
    return layer_shapes(lite0, lite0.layers)


@pytest.fixture(scope="module")
def frames(cat_bgr, coffee_bgr):
    """Three different frames: the cat, the coffee, the cat mirrored."""
    images = [cat_bgr, coffee_bgr, np.ascontiguousarray(cat_bgr[:, ::-1])]
    return [Captured(Frame(image, i, i / 30), time.perf_counter()) for i, image in enumerate(images)]


def context(shapes) -> LiveContext:
    return LiveContext(shapes, MOSAIC)


def make_units(lite0, shapes, tmp_path, settings=TINY) -> LiveUnits:
    return LiveUnits(lite0, shapes, TaskRunner(), settings, SIDE, MOSAIC, cache=UnitCache(tmp_path / "cache"))


def state_at(shapes, layer: str, channel: int = 0, **extras) -> AppState:
    return AppState(layer=[s.name for s in shapes].index(layer), channel=channel, extras=extras)


def wait_tasks(runner: TaskRunner, timeout: float = 30) -> None:
    for handle in list(runner.active()):
        handle.join(timeout)
    assert not runner.active()


# --- key actions -------------------------------------------------------------------------------------

def test_the_key_table_binds_the_three_unit_actions(shapes):
    table = load_key_table("keys.yaml")
    assert {table.action_for(ord(k)) for k in "wtu"} == {"units_filters", "units_reset_top", "units_precompute"}


def test_filters_key_toggles_the_filter_view_and_leaves_the_rest(shapes):
    start = state_at(shapes, LAYER, 5)
    on = reduce(start, "units_filters", context(shapes)).state
    off = reduce(on, "units_filters", context(shapes)).state
    assert on.extras[FILTERS] is True and off.extras[FILTERS] is False
    assert dataclasses.replace(on, extras={}) == dataclasses.replace(start, extras={})
    assert reduce(on, "reset", dataclasses.replace(context(shapes), initial=start)).state.extras == {}


def test_reset_and_precompute_keys_count_requests_and_say_so(shapes):
    state = state_at(shapes, LAYER)
    first = reduce(state, "units_reset_top", context(shapes))
    second = reduce(first.state, "units_reset_top", context(shapes))
    assert (first.state.extras[RESET], second.state.extras[RESET]) == (1, 2)
    assert first.effects[0].kind == "message" and "top-9" in first.effects[0].text
    pre = reduce(state, "units_precompute", context(shapes))
    assert pre.state.extras[PRECOMPUTE] == 1 and LAYER in pre.effects[0].text


# --- top-9 in the side column --------------------------------------------------------------------------

def test_side_pane_shows_the_selected_channels_top_patches_after_frames_pass_the_stage(lite0, shapes, frames,
                                                                                       tmp_path):
    units = make_units(lite0, shapes, tmp_path)
    step = LiveCompute(lite0, [s.name for s in shapes])
    step.add_stage("units", units.stage)
    oracle = TopPatches(receptive_field(lite0, LAYER), 112)
    state = state_at(shapes, LAYER, 7)
    with step:
        for captured in frames:
            result = step(captured, state)
            oracle.update(result.view, result.activations[LAYER], captured.frame.index)
        again = step(frames[-1], state)  # the same frame recomputed (a key while frozen) counts once
    wait_tasks(units.tasks)
    assert units.error == ""
    tracker = units.tracker(LAYER)
    assert tracker.frames_seen == 3
    for channel in (7, 40):
        expected = oracle.patches(channel)
        assert [p.frame_index for p in tracker.patches(channel)] == [p.frame_index for p in expected]
        view = dataclasses.replace(state, channel=channel)
        pane = units.side_pane(again, view)
        assert np.array_equal(pane, unit_column(units._images.get((LAYER, channel)), [p.image for p in expected],
                                                *SIDE, title=f"{LAYER} ch {channel}"))
    assert not np.array_equal(units.side_pane(again, state), units.side_pane(again, dataclasses.replace(state, channel=40)))


def test_reset_request_empties_the_top_patches_once(lite0, shapes, frames, tmp_path):
    units = make_units(lite0, shapes, tmp_path)
    step = LiveCompute(lite0, [s.name for s in shapes])
    step.add_stage("units", units.stage, depends_on=(RESET,))
    state = state_at(shapes, LAYER, 3)
    with step:
        for captured in frames[:2]:
            step(captured, state)
        assert len(units.tracker(LAYER).patches(3)) == 2
        reset = dataclasses.replace(state, extras={RESET: 1})
        step(frames[1], reset)  # the key recomputes the frame: only it is left
        assert [p.frame_index for p in units.tracker(LAYER).patches(3)] == [1]
        step(frames[2], reset)  # the same request is not acted on twice
        assert len(units.tracker(LAYER).patches(3)) == 2
    units.tasks.shutdown()


# --- unit images in the background ---------------------------------------------------------------------

def test_requesting_a_unit_image_starts_a_task_and_the_pane_shows_it_when_done(lite0, shapes, frames, tmp_path):
    units = make_units(lite0, shapes, tmp_path)
    state = state_at(shapes, LAYER, 11)
    with LiveCompute(lite0, [s.name for s in shapes]) as step:
        result = step(frames[0], state)
    units.request(LAYER, 11)
    handle = units.tasks.latest(UNIT_TASK)
    assert handle is not None and handle.cancellable
    waiting = units.side_pane(result, state)
    if handle.running:  # drawn as "computing", never waited for
        assert (waiting[18:18 + 100, 10:310] == STALE).all(axis=-1).mean() > 0.5
    handle.join(30)
    assert handle.status == "done" and handle.progress == 1.0
    cached = UnitCache(tmp_path / "cache").get(lite0, LAYER, 11, TINY)
    assert cached is not None and cached.shape == (32, 32, 3)
    assert np.array_equal(units.side_pane(result, state), unit_column(cached, [], *SIDE, title=f"{LAYER} ch 11"))
    # a fresh window finds it on disk: no task
    again = make_units(lite0, shapes, tmp_path)
    again.request(LAYER, 11)
    assert again.tasks.latest(UNIT_TASK) is None and np.array_equal(again._images[(LAYER, 11)], cached)


def test_a_cancelled_unit_is_not_requested_again_until_the_selection_changes(lite0, shapes, tmp_path):
    units = make_units(lite0, shapes, tmp_path, preset("lucid", size=32, steps=10_000))
    units.request(LAYER, 2)
    first = units.tasks.latest(UNIT_TASK)
    assert units.tasks.cancel() == 1  # Esc
    first.join(10)
    assert first.status == "cancelled"
    units.request(LAYER, 2)
    assert units.tasks.latest(UNIT_TASK) is first
    units.request(LAYER, 3)
    assert units.tasks.latest(UNIT_TASK) is not first
    units.tasks.shutdown()


def test_precompute_makes_every_image_of_the_layer_starting_at_the_selected_channel(lite0, shapes, frames, tmp_path):
    units = make_units(lite0, shapes, tmp_path, preset("lucid", size=16, steps=1))
    state = state_at(shapes, "_relu0", 30, **{PRECOMPUTE: 1})  # 32 channels: one batch
    step = LiveCompute(lite0, [s.name for s in shapes])
    step.add_stage("units", units.stage, depends_on=(PRECOMPUTE,))
    with step:
        step(frames[0], state)
    handle = units.tasks.latest(LAYER_TASK)
    assert handle is not None and units.pending("_relu0", 5)
    handle.join(30)
    assert handle.status == "done" and handle.result == 32
    assert all(units._images.get(("_relu0", c)) is not None for c in range(32))
    assert len(list(units.cache.folder(lite0, "_relu0", units.settings).glob("*.png"))) == 32
    assert units.tasks.latest(UNIT_TASK) is None  # the selected unit came with its layer


def test_unit_images_in_the_background_leave_the_frames_activations_alone(lite0, shapes, frames, tmp_path):
    """The task runs on the shared model; the gated frame capture records only the frame pass."""
    units = make_units(lite0, shapes, tmp_path)
    step = LiveCompute(lite0, [s.name for s in shapes])
    with step:
        step(frames[0], state_at(shapes, LAYER))
        handle = units.tasks.start(UNIT_TASK, lambda task: units._compute(task, LAYER, [0, 1]))
        handle.join(30)
        assert handle.status == "done"
        captured = step.analyser._capture.activations[LAYER]
    assert tuple(captured.shape) == (1, 112, 14, 14)  # not the (2, 112, 2, 2) of the 32 px batch


# --- filter view and wiring ----------------------------------------------------------------------------

def test_filter_mode_puts_the_filters_in_the_mosaic_and_says_so_in_the_status(lite0, frames):
    config = load_config(overrides={"units.size": 16, "units.steps": 1})
    app = LiveApp(open_source("demo", loop=True), lite0, config, "_relu0")
    try:
        assert app.view.pane_providers.keys() >= {"side", "mosaic"}
        app.tasks.start = lambda *a, **k: pytest.fail("no task in this test")  # noqa: ARG005
        app.units._requested = ("_relu0", 0)  # (the stage would ask for the unit image)
        rect = app.view.panes["mosaic"]
        with app.compute as step:
            plain = app.state
            filters = reduce(plain, "units_filters", app.context).state
            result = step(frames[0], filters)
        image, _ = app.view.base(result, filters)
        mosaic = image[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]
        stem = layer_conv_weight(lite0.module, "_relu0")
        assert tuple(stem.shape) == (32, 3, 3, 3)
        assert np.array_equal(mosaic, fit_image(filters_view(stem, 0, rect.h, rect.w), rect.h, rect.w,
                                                enlarge=False))  # the RGB filters, centred
        activations, _ = app.view.base(result, plain)
        assert not np.array_equal(activations[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w], mosaic)
        status = lambda s: app.view.status_text("demo", "lite0", s, result, (0, 0, 0), [])  # noqa: E731
        assert status(filters).endswith("| live filters") and "filters" not in status(plain)
    finally:
        app.source.close()


def test_deeper_layers_show_the_selected_filters_input_channels(lite0, shapes, tmp_path):
    units = make_units(lite0, shapes, tmp_path)
    weight = layer_conv_weight(lite0.module, LAYER)
    on = state_at(shapes, LAYER, 4, **{FILTERS: True})
    assert units.mosaic_pane(None, dataclasses.replace(on, extras={})) is None
    pane, picture = units.mosaic_pane(None, on), fit_image(filters_view(weight, 4, *MOSAIC), *MOSAIC, enlarge=False)
    assert np.array_equal(pane[:-24], picture[:-24])  # the filter's picture...
    assert not np.array_equal(pane[-24:], picture[-24:])  # ...over a caption naming the filter
    assert not np.array_equal(units.mosaic_pane(None, on), units.mosaic_pane(None, dataclasses.replace(on, channel=5)))


def test_a_failed_unit_image_says_why_in_the_side_pane(lite0, shapes, tmp_path):
    units = make_units(lite0, shapes, tmp_path)
    units.request(LAYER, 500)  # no such channel: the optimisation refuses it
    units.tasks.latest(UNIT_TASK).join(30)
    assert "channels 0..111" in units.failure(LAYER, 500) and not units.pending(LAYER, 500)


def test_top_patches_are_kept_for_the_most_recent_layers_only(lite0, shapes, frames, tmp_path):
    units = make_units(lite0, shapes, tmp_path)
    units._requested = ("none", 0)
    units.request = lambda layer, channel: None  # no unit images here
    with LiveCompute(lite0, [s.name for s in shapes]) as step:
        result = step(frames[0], state_at(shapes, LAYER))
    for shape in shapes[:6]:
        units.stage(result, state_at(shapes, shape.name))
    assert units.error == ""
    assert [name for name in units._trackers] == [s.name for s in shapes[2:6]]
