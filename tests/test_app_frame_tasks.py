"""What the dream and the inversion/style plugins share (toolbox.app.frame_tasks): the one-shot
task's pane and captions at each stage, the loop over the newest frames, the status flags. A
stand-in plugin and stepper, no model: milliseconds."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from toolbox.app.frame_tasks import Captions, FrameTasks, LiveFrame, Shot, captioned_pane
from toolbox.app.state import AppState
from toolbox.app.tasks import TaskRunner
from toolbox.app.threads import Captured, LatestSlot
from toolbox.render.panes import fit_image
from toolbox.sources.frame import Frame

SIZE = (120, 160)
CAPTION_ROWS = 30  # below these the pane is the picture alone


class Plugin(FrameTasks):
    captions = Captions(plugin="plug", shot="shot", making="making", made="made from {label}", live="loop")
    mode, request_key, view_key, shot_task, live_task = "looping", "request", "view", "shot", "loop"


def plugin(tmp_path=Path("/nonexistent")) -> Plugin:
    return Plugin(None, [], TaskRunner(), None, LatestSlot(), tmp_path, SIZE)


def picture(value: int) -> np.ndarray:
    image = np.full((60, 80, 3), value, np.uint8)
    image[10:30, 20:50] = 255 - value  # something to see
    return image


def below_caption(pane: np.ndarray) -> np.ndarray:
    return pane[CAPTION_ROWS:]


def fitted(image: np.ndarray) -> np.ndarray:
    return below_caption(fit_image(image, *SIZE, interpolation=cv2.INTER_LINEAR))


OPEN = AppState(layer=2, channel=5, extras={"request": 1, "view": (2, 5)})


def test_shot_view_names_each_stage_and_shows_the_right_picture():
    tasks = plugin()
    source, made = picture(100), picture(30)
    shot = Shot(1, source, "_blocks.8")
    image, caption = tasks.shot_view(shot)
    assert caption == "making _blocks.8 0% (Esc cancels)" and np.array_equal(image, source // 2)  # dimmed
    failed = dataclasses.replace(shot, error="RuntimeError: boom")
    assert tasks.shot_view(failed) == (source, "shot failed: RuntimeError: boom")
    cancelled = dataclasses.replace(shot, image=made, cancelled=True)
    assert tasks.shot_view(cancelled) == (made, "shot _blocks.8 cancelled (partial, not saved)")
    saved = dataclasses.replace(shot, image=made, path=Path("/snaps/shot-0003.png"))
    assert tasks.shot_view(saved) == (made, "made from _blocks.8 - saved shot-0003.png")


def test_pane_is_the_shot_while_its_view_is_open_the_loop_in_its_mode_else_none():
    tasks = plugin()
    waiting = tasks.pane(None, OPEN)  # requested, not staged yet: a blank pane under "making..."
    assert waiting.shape == (*SIZE, 3) and below_caption(waiting).std() == 0
    tasks.shot = Shot(1, picture(100), "L", image=picture(30), path=Path("shot-0000.png"))
    assert np.array_equal(below_caption(tasks.pane(None, OPEN)), fitted(picture(30)))
    moved = dataclasses.replace(OPEN, channel=6)  # any channel or layer move closes the view
    assert tasks.pane(None, moved) is None
    looping = dataclasses.replace(moved, mode="looping")
    assert below_caption(tasks.pane(None, looping)).std() == 0  # starting
    tasks.live = LiveFrame(picture(200), 3.0, "waves")
    assert np.array_equal(below_caption(tasks.pane(None, looping)), fitted(picture(200)))


def test_status_flag_names_a_stage_error_a_failed_shot_in_its_view_and_the_loops_rate():
    tasks = plugin()
    assert tasks.status_flag(OPEN) is None
    tasks.shot = Shot(1, picture(100), "L", error="RuntimeError: boom")
    assert tasks.status_flag(OPEN) == "shot failed: RuntimeError: boom"
    assert tasks.status_flag(dataclasses.replace(OPEN, layer=3)) is None  # its view is closed
    looping = AppState(layer=0, mode="looping")
    assert tasks.status_flag(looping) == "loop starting"
    tasks.live = LiveFrame(picture(0), 2.54, "x")
    assert tasks.status_flag(looping) == "loop 2.5 fps"
    tasks.error = "ValueError: no"
    assert tasks.status_flag(looping) == "plug error: ValueError: no"


class Doubler:
    """A stepper: the frame's values doubled, counting resets (a seek or loop of the video)."""

    fps = 9.0

    def __init__(self):
        self.resets = 0

    def step(self, image, cancel):
        return np.minimum(image.astype(np.uint16) * 2, 255).astype(np.uint8)

    def reset(self):
        self.resets += 1


def test_the_loop_remakes_each_new_frame_mirrored_as_shown_resets_after_a_seek_and_stops():
    tasks, stepper = plugin(), Doubler()
    tasks.keep_live(("a",), lambda task: tasks.run_live(task, stepper, True, lambda: "double"), "loop")
    handle = tasks.tasks.latest("loop")
    assert handle.running and not handle.cancellable
    image = picture(60)
    for index in (1, 2, 100):  # 2 -> 100: a jump, the flow of the loop would link unrelated frames
        tasks.frames.put(Captured(Frame(image, index, 0.0), time.perf_counter()))
        deadline = time.monotonic() + 5
        while tasks.live_frames < [1, 2, 100].index(index) + 1 and time.monotonic() < deadline:
            time.sleep(0.005)
    assert tasks.live_frames == 3 and stepper.resets == 1
    assert np.array_equal(tasks.live.image, np.minimum(image[:, ::-1].astype(int) * 2, 255))
    assert (tasks.live.label, tasks.live.fps) == ("double", 9.0)
    tasks.keep_live(("a",), lambda task: pytest.fail("a running loop with the same key is kept"), "loop")
    tasks.stop_live()
    handle.join(5)
    assert handle.status == "cancelled" and tasks.live is None


def test_a_finished_shot_is_saved_under_a_fresh_name_and_a_cancelled_one_is_not(tmp_path):
    tasks = plugin(tmp_path)
    for cancelled in (False, False, True):
        shot = Shot(1, picture(100), "L")
        handle = tasks.tasks.start("shot", lambda task: tasks.run_shot(
            task, shot, "shot", lambda progress, stop: (progress(0.5), (picture(30), cancelled))[1]))
        handle.join(5)
        assert shot.cancelled == cancelled and np.array_equal(shot.image, picture(30))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot-0000.png", "shot-0001.png"]
    assert np.array_equal(cv2.imread(str(tmp_path / "shot-0001.png")), picture(30))


def test_a_caption_sits_on_a_dark_band_over_the_picture():
    pane = captioned_pane(np.full((60, 80, 3), 200, np.uint8), "caption", SIZE)
    assert pane[2, -2].max() < 80 and pane[-2, -2].min() == 200


def test_the_shot_key_opens_the_view_with_a_new_request_and_closes_it_again():
    from toolbox.app.frame_tasks import toggle_shot_view

    state = AppState(layer=2, channel=5)
    opened = toggle_shot_view(state, "request", "view", "making it")
    assert opened.state.extras == {"request": 1, "view": (2, 5)}
    assert [e.text for e in opened.effects] == ["making it"]
    closed = toggle_shot_view(opened.state, "request", "view", "making it")
    assert closed.extras == {"request": 1, "view": None}  # a plain state: no message, no new request
    moved = dataclasses.replace(opened.state, channel=6)  # the view closed itself: the key asks again
    assert toggle_shot_view(moved, "request", "view", "again").state.extras == {"request": 2, "view": (2, 6)}


def test_a_caption_over_no_picture_sits_on_a_blank_pane():
    pane = captioned_pane(None, "caption", SIZE)
    band = pane[:CAPTION_ROWS]
    assert pane.shape == (*SIZE, 3)
    assert (pane[CAPTION_ROWS:] == pane[-1, -1]).all() and band.max() > 200  # the text is bright
