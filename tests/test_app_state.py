"""The live window's state machine: every key action's effect, without a window."""
from __future__ import annotations

import dataclasses

import pytest

from toolbox.app.state import ACTIONS, AppState, Effect, LayerShape, LiveContext, reduce, register_action
from toolbox.render.mosaic import mosaic_geometry

LAYERS = (LayerShape("a", 32, 112, 112), LayerShape("b", 112, 14, 14), LayerShape("c", 10, 7, 7))
START = AppState(layer=1, channel=0, zoom="channel", normalisation="channel", colormap_on=False)
VIDEO = LiveContext(LAYERS, (640, 640), seekable=True, fast_step=3, seek_seconds=5.0, initial=START)
CAMERA = dataclasses.replace(VIDEO, seekable=False)


def step(state: AppState, action: str, context: LiveContext = VIDEO) -> AppState:
    return reduce(state, action, context).state


def effects(state: AppState, action: str, context: LiveContext = VIDEO) -> tuple[Effect, ...]:
    return reduce(state, action, context).effects


def test_next_and_previous_layer_move_by_one_and_stop_at_the_ends():
    assert step(START, "next_layer").layer == 2
    assert step(START, "prev_layer").layer == 0
    assert step(step(START, "next_layer"), "next_layer").layer == 2
    assert step(AppState(layer=0), "prev_layer").layer == 0


def test_changing_layer_clamps_the_channel_to_the_new_layer():
    state = dataclasses.replace(START, channel=100)  # layer b has 112 channels, c only 10
    assert step(state, "next_layer").channel == 9
    assert step(state, "prev_layer").channel == 31


def test_arrows_move_the_cursor_on_the_mosaic_grid():
    cols = mosaic_geometry(112, 14, 14, 640, 640).cols
    assert step(START, "channel_right").channel == 1
    assert step(START, "channel_down").channel == cols
    assert step(START, "channel_left").channel == 0  # clamped at the left edge
    assert step(START, "channel_up").channel == 0
    at = dataclasses.replace(START, channel=cols + 1)
    assert step(at, "channel_up").channel == 1
    assert step(at, "channel_left").channel == cols


def test_fast_moves_go_fast_step_cells():
    cols = mosaic_geometry(112, 14, 14, 640, 640).cols
    assert step(START, "channel_right_fast").channel == 3
    assert step(START, "channel_down_fast").channel == 3 * cols
    assert step(dataclasses.replace(START, channel=5), "channel_left_fast").channel == 2


def test_cursor_never_leaves_the_valid_channels():
    state = dataclasses.replace(START, channel=111)
    for action in ("channel_right", "channel_down", "channel_right_fast", "channel_down_fast"):
        assert step(state, action).channel <= 111


def test_most_active_jumps_to_the_channel_with_the_highest_mean():
    means = tuple(float(v) for v in [0.1] * 112)
    means = means[:42] + (5.0,) + means[43:]
    assert step(START, "most_active", dataclasses.replace(VIDEO, channel_means=means)).channel == 42


def test_most_active_without_a_result_only_says_so():
    out = reduce(START, "most_active", VIDEO)
    assert out.state == START and out.effects[0].kind == "message"


def test_zoom_cycles_through_all_modes_and_back():
    seen = [START.zoom]
    state = START
    for _ in range(3):
        state = step(state, "zoom_cycle")
        seen.append(state.zoom)
    assert seen == ["channel", "overlay", "input", "channel"]


@pytest.mark.parametrize("action, field, before, after", [
    ("normalisation", "normalisation", "channel", "layer"),
    ("colormap", "colormap_on", False, True),
    ("freeze", "frozen", False, True),
    ("mirror", "mirror", False, True),
    ("help", "help", False, True),
    ("record", "recording", False, True),
    ("pause", "paused", False, True),
])
def test_toggles_flip_their_field_and_flip_back(action, field, before, after):
    state = dataclasses.replace(START, **{field: before})
    once = step(state, action)
    assert getattr(once, field) == after
    assert getattr(step(once, action), field) == before
    assert dataclasses.replace(once, **{field: before}) == state  # nothing else changed


def test_video_transport_emits_source_commands():
    assert effects(START, "seek_forward") == (Effect("seek_seconds", 5.0),)
    assert effects(START, "seek_back") == (Effect("seek_seconds", -5.0),)
    assert effects(START, "restart") == (Effect("restart"),)


def test_stepping_a_frame_pauses_the_video():
    for action, amount in (("step_forward", 1), ("step_back", -1)):
        out = reduce(START, action, VIDEO)
        assert out.state.paused and out.effects == (Effect("step_frames", amount),)


@pytest.mark.parametrize("action", ["pause", "step_back", "step_forward", "seek_back", "seek_forward", "restart"])
def test_video_keys_on_a_camera_change_nothing_and_explain(action):
    out = reduce(START, action, CAMERA)
    assert out.state == START
    assert [e.kind for e in out.effects] == ["message"]


def test_snapshot_and_quit_are_effects():
    assert effects(START, "snapshot") == (Effect("snapshot"),)
    assert effects(START, "quit") == (Effect("quit"),)


def test_escape_cancels_a_running_task_else_quits():
    assert effects(START, "cancel_or_quit", dataclasses.replace(VIDEO, busy=True)) == (Effect("cancel_tasks"),)
    assert effects(START, "cancel_or_quit", VIDEO) == (Effect("quit"),)


def test_reset_restores_the_start_choices_but_keeps_input_and_recording():
    changed = AppState(layer=2, channel=7, zoom="input", normalisation="layer", colormap_on=True, mirror=True,
                       help=True, frozen=True, paused=True, recording=True, overlay="gradcam", mode="dream")
    reset = step(changed, "reset")
    assert (reset.layer, reset.channel, reset.zoom, reset.normalisation, reset.colormap_on) == (1, 0, "channel",
                                                                                               "channel", False)
    assert (reset.overlay, reset.mode, reset.help, reset.mirror) == ("none", "live", False, False)
    assert (reset.frozen, reset.paused, reset.recording) == (True, True, True)


def test_reducers_are_pure():
    before = dataclasses.replace(START)
    for action in ACTIONS:
        reduce(START, action, VIDEO)
    assert START == before


def test_extensions_register_actions_and_a_name_is_taken_once():
    name = "test_cycle_overlay"
    register_action(name, lambda s, c: dataclasses.replace(s, overlay="gradcam" if s.overlay == "none" else "none"))
    try:
        assert step(START, name).overlay == "gradcam"
        with pytest.raises(ValueError):
            register_action(name, lambda s, c: s)
    finally:
        del ACTIONS[name]


def test_with_request_bumps_the_counter_and_adds_changes_without_touching_the_old_state():
    from toolbox.app.state import with_request

    state = AppState(layer=0, extras={"other": 1})
    once = with_request(state, "ask", view=(0, 3))
    twice = with_request(once, "ask")
    assert dict(state.extras) == {"other": 1}
    assert dict(once.extras) == {"other": 1, "ask": 1, "view": (0, 3)}
    assert twice.extras["ask"] == 2 and twice.extras["view"] == (0, 3)
