"""The live window's bad inputs and dead threads: start-up errors before the window opens, unreadable
files in a folder skipped with a warning, a dead capture thread shown and ending the app non-zero."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

import toolbox.app.live as live_module
from toolbox import cli
from toolbox.app.live import LiveApp, LiveOptions
from toolbox.config import load_config
from toolbox.errors import DeepvisError
from toolbox.sources import open_source
from toolbox.sources.base import FrameSource
from toolbox.sources.frame import Frame


@pytest.fixture
def folder(tmp_path):
    """0-good.png, 1-bad.jpg (text), 2-good.png."""
    for i in (0, 2):
        cv2.imwrite(str(tmp_path / f"{i}-good.png"), np.full((32, 32, 3), 60 * i, np.uint8))
    (tmp_path / "1-bad.jpg").write_text("not a picture")
    return tmp_path


def test_live_on_an_undecodable_image_exits_2_with_one_line_before_any_window(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "text.jpg"
    bad.write_text("hello")

    def no_window(*args, **kwargs):
        raise AssertionError("the window opened")

    monkeypatch.setattr(live_module, "check_gui", lambda: None)
    monkeypatch.setattr(live_module, "Window", no_window)
    monkeypatch.setattr(live_module, "model_from_config", no_window)  # the source is checked first
    assert cli.main(["live", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepvis: error: cannot decode image") and "\n" not in err


class BreakingVideo(FrameSource):
    """A seekable source whose decoder raises after ``good`` frames."""

    seekable = True
    name = "breaking.mp4"

    def __init__(self, good: int = 3):
        self.good, self.count = good, 0

    @property
    def fps(self):
        return 100.0

    @property
    def frame_count(self):
        return 100_000

    @property
    def position(self):
        return self.count

    def seek(self, index):
        self.count = index

    def read(self):
        if self.count >= self.good:
            raise RuntimeError("decoder exploded")
        self.count += 1
        return Frame(np.full((64, 64, 3), 100, np.uint8), self.count - 1, (self.count - 1) / 100)


class RecordingWindow:
    """Stands in for the OpenCV window: records what is shown, never presses a key."""

    def __init__(self, title: str):
        self.images: list[np.ndarray] = []
        self.closed = False

    def show(self, image):
        self.images.append(image)

    def poll_key(self, wait_ms=1):
        time.sleep(0.005)
        return -1

    def close(self):
        pass


def run_with_timeout(app: LiveApp, seconds: float) -> int | None:
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(app.run()), daemon=True)
    runner.start()
    runner.join(seconds)
    if runner.is_alive():
        app.quit = True
        runner.join(10)
        return None
    return codes[0]


def test_a_dead_capture_thread_is_shown_and_ends_the_app_non_zero(lite0, monkeypatch):
    monkeypatch.setattr(live_module, "Window", RecordingWindow)
    monkeypatch.setattr(live_module, "FAILURE_SHOWN_S", 0.5)
    app = LiveApp(BreakingVideo(), lite0, load_config(), "_blocks.8", LiveOptions(plugins=[]))
    code = run_with_timeout(app, 30)
    assert code == live_module.EXIT_THREAD_FAILED, "the app kept running without its input"
    assert app.failure == "capture failed: RuntimeError: decoder exploded"
    assert "STOPPED: capture failed: RuntimeError: decoder exploded" in app._status[0]
    # the last image shown says so over the input pane (greyed: no colour left there)
    input_pane = app.view.panes["input"]
    last = app.window.images[-1][input_pane.y:input_pane.y + input_pane.h, input_pane.x:input_pane.x + input_pane.w]
    assert np.ptp(last.astype(int), axis=2).max() == 0 and last.max() == 255  # grey, with white text


def test_the_status_line_names_skipped_files(lite0, folder, monkeypatch):
    monkeypatch.setattr(live_module, "Window", RecordingWindow)
    source = open_source(str(folder), loop=True)
    app = LiveApp(source, lite0, load_config(), "_blocks.8", LiveOptions(plugins=[], paced=False, max_frames=6))
    assert run_with_timeout(app, 60) == 0
    assert "skipped 1 unreadable file: 1-bad.jpg" in app._status[0]


def test_random_weights_are_marked_in_the_title_and_the_status_line(random_model, monkeypatch):
    titles = []

    class TitledWindow(RecordingWindow):
        def __init__(self, title):
            super().__init__(title)
            titles.append(title)

    monkeypatch.setattr(live_module, "Window", TitledWindow)
    model = random_model("resnet18")
    app = LiveApp(BreakingVideo(good=10_000), model, load_config(), "layer2",
                  LiveOptions(plugins=[], paced=False, max_frames=3))
    assert run_with_timeout(app, 60) == 0
    assert titles == ["deepvis - resnet18 [RANDOM WEIGHTS]"]
    assert "resnet18 [RANDOM WEIGHTS] (" in app._status[0]


def test_a_stepped_video_shows_its_frame_number_and_time_in_the_status_line(lite0, monkeypatch):
    class SteppingWindow(RecordingWindow):
        polls_after_step = 0

        def poll_key(self, wait_ms=1):
            time.sleep(0.005)
            if self.polls_after_step:
                self.polls_after_step += 1
                return ord("q") if self.polls_after_step > 200 else -1  # about a second later
            if len(self.images) >= 10:
                self.polls_after_step = 1
                return ord(".")  # one frame forward (pauses)
            return -1

    monkeypatch.setattr(live_module, "Window", SteppingWindow)
    app = LiveApp(BreakingVideo(good=10_000), lite0, load_config(), "_blocks.8", LiveOptions(plugins=[]))
    assert run_with_timeout(app, 60) == 0
    _, captured = app.frames.get()
    assert app.state.paused
    frame = captured.frame
    assert f"frame {frame.index + 1}/100000, {frame.timestamp:.2f} s" in app._status[0]


def test_a_camera_gets_a_few_seconds_for_its_first_frame_and_a_silent_one_is_a_start_up_error(monkeypatch):
    class Camera(FrameSource):
        live = True
        name = "camera 0"

        def __init__(self, blank_reads):
            self.reads, self.blank_reads = 0, blank_reads

        def read(self):
            self.reads += 1
            return Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0) if self.reads > self.blank_reads else None

    assert live_module.first_frame(Camera(blank_reads=3)).image.shape == (8, 8, 3)
    monkeypatch.setattr(live_module, "FIRST_FRAME_S", 0.2)
    with pytest.raises(DeepvisError, match="camera 0 delivered no frame"):
        live_module.first_frame(Camera(blank_reads=10**9))
