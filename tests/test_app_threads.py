"""Threads, background tasks, snapshots and recordings of the live app, without a window."""
from __future__ import annotations

import json
import threading
import time

import cv2
import numpy as np
import pytest

from toolbox.app.recorder import Recorder
from toolbox.app.snapshot import snapshot_paths, write_snapshot
from toolbox.app.tasks import TaskRunner
from toolbox.app.threads import Captured, CaptureThread, ComputeThread, LatestSlot, RateMeter
from toolbox.app.window import check_gui
from toolbox.errors import DeepvisError
from toolbox.render.layout import Rect
from toolbox.sources.base import FrameSource
from toolbox.sources.frame import Frame


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


class FakeVideo(FrameSource):
    """A seekable 'file' of n frames whose pixels encode the frame index."""

    seekable = True

    def __init__(self, n=100, fps=1000.0):
        self.n, self._fps, self._next = n, fps, 0

    @property
    def fps(self):
        return self._fps

    @property
    def frame_count(self):
        return self.n

    @property
    def position(self):
        return self._next

    def read(self):
        if self._next >= self.n:
            self._next = 0
        frame = Frame(np.full((4, 4, 3), self._next % 256, np.uint8), self._next, self._next / self._fps)
        self._next += 1
        return frame

    def seek(self, index):
        self._next = index


class FlakyCamera(FrameSource):
    """A live source that delivers, goes dark for ``outage`` reads+reconnects, then delivers again."""

    live = True

    def __init__(self, outage_after=5, failed_reconnects=2):
        self.count, self.outage_after, self.failed_reconnects = 0, outage_after, failed_reconnects
        self.dark = False
        self.reconnects = 0

    def read(self):
        if self.dark:
            return None
        if self.count == self.outage_after and self.reconnects == 0:
            self.dark = True
            return None
        self.count += 1
        time.sleep(0.005)
        return Frame(np.zeros((4, 4, 3), np.uint8), self.count, 0.0)

    def reconnect(self):
        self.reconnects += 1
        if self.reconnects > self.failed_reconnects:
            self.dark = False
            return True
        return False


def start_capture(source, paced=False):
    frames, wake = LatestSlot(), threading.Event()
    thread = CaptureThread(source, frames, wake, paced=paced, backoff=(0.01, 0.04))
    thread.start()
    return thread, frames


def test_latest_slot_keeps_only_the_newest_value():
    slot = LatestSlot()
    assert slot.get() == (0, None)
    for value in "abc":
        slot.put(value)
    assert slot.get() == (3, "c")


def test_rate_meter_counts_events_in_its_window_and_falls_to_zero():
    meter = RateMeter(window=1.0)
    meter._start = 0.0
    for i in range(30):
        meter.tick(10.0 + i / 30)
    assert meter.rate(11.0) == pytest.approx(30, abs=1)
    assert meter.rate(12.5) == 0


def test_capture_publishes_frames_and_seek_moves_the_position():
    source = FakeVideo(n=100_000)  # long enough that the seeks below never reach the end and clamp
    thread, frames = start_capture(source)
    try:
        assert wait_until(lambda: frames.get()[0] > 3)
        thread.set_controls(paused=True, frozen=False)

        def settled():  # the pause has taken effect: no new frame for a while (robust under load)
            before = frames.get()[0]
            time.sleep(0.05)
            return frames.get()[0] == before

        assert wait_until(settled)
        shown = frames.get()[1].frame.index
        thread.command("step_frames", 1)
        assert wait_until(lambda: frames.get()[1].frame.index == shown + 1)
        thread.command("seek_seconds", 0.01)  # 10 frames at 1000 fps
        assert wait_until(lambda: frames.get()[1].frame.index == shown + 11)
        thread.command("step_frames", -1)
        assert wait_until(lambda: frames.get()[1].frame.index == shown + 10)
        thread.command("restart")
        assert wait_until(lambda: frames.get()[1].frame.index == 0)
        seq = frames.get()[0]
        time.sleep(0.1)
        assert frames.get()[0] == seq  # paused: nothing new
    finally:
        thread.stop()
        thread.join(2)
    assert not thread.is_alive()


def test_unpaced_file_reads_the_next_frame_only_when_the_consumer_took_the_last():
    source = FakeVideo()
    frames, wake = LatestSlot(), threading.Event()
    taken = [0]
    thread = CaptureThread(source, frames, wake, paced=False)
    thread.demand = lambda: taken[0] >= frames.get()[0]
    thread.start()
    try:
        for expected in range(1, 6):
            assert wait_until(lambda: frames.get()[0] == expected)
            time.sleep(0.02)
            assert frames.get()[0] == expected  # no frame decoded and dropped while nobody asked
            taken[0] = expected
    finally:
        thread.stop()
        thread.join(2)
    assert source.position == 5


def test_frozen_input_publishes_nothing_until_unfrozen():
    thread, frames = start_capture(FakeVideo())
    try:
        assert wait_until(lambda: frames.get()[0] > 0)
        thread.set_controls(paused=False, frozen=True)
        time.sleep(0.05)
        seq = frames.get()[0]
        time.sleep(0.1)
        assert frames.get()[0] == seq
        thread.set_controls(paused=False, frozen=False)
        assert wait_until(lambda: frames.get()[0] > seq)
    finally:
        thread.stop()
        thread.join(2)


def test_a_live_source_that_stops_is_reconnected_with_backoff_and_resumes():
    camera = FlakyCamera(outage_after=5, failed_reconnects=2)
    thread, frames = start_capture(camera)
    try:
        assert wait_until(lambda: camera.dark)
        assert wait_until(lambda: camera.reconnects >= 3 and thread.status.signal)
        seq = frames.get()[0]
        assert wait_until(lambda: frames.get()[0] > seq + 3)
    finally:
        thread.stop()
        thread.join(2)


def test_compute_always_takes_the_newest_frame_and_skips_the_rest():
    frames, states, results, wake = LatestSlot(), LatestSlot(), LatestSlot(), threading.Event()
    seen = []
    release = threading.Event()

    def step(captured, state):
        seen.append(captured.frame.index)
        release.wait(2)
        return captured.frame.index

    states.put("state")
    thread = ComputeThread(step, frames, states, results, wake)
    thread.start()
    try:
        frames.put(Captured(Frame(np.zeros((2, 2, 3), np.uint8), 0, 0.0), 0.0))
        wake.set()
        assert wait_until(lambda: seen == [0])
        for i in range(1, 10):  # arrive while the model is busy
            frames.put(Captured(Frame(np.zeros((2, 2, 3), np.uint8), i, 0.0), 0.0))
        wake.set()
        release.set()
        assert wait_until(lambda: results.get()[1] == 9)
        assert seen == [0, 9]
        assert thread.stats.skipped == 8
    finally:
        thread.stop()
        thread.join(2)


def test_compute_recomputes_the_same_frame_when_its_state_key_changes():
    frames, states, results, wake = LatestSlot(), LatestSlot(), LatestSlot(), threading.Event()
    calls = []

    class Step:
        def key(self, state):
            return state["mirror"]

        def __call__(self, captured, state):
            calls.append(state["mirror"])
            return state["mirror"]

    thread = ComputeThread(Step(), frames, states, results, wake)
    thread.start()
    try:
        frames.put(Captured(Frame(np.zeros((2, 2, 3), np.uint8), 0, 0.0), 0.0))
        states.put({"mirror": False, "channel": 0})
        wake.set()
        assert wait_until(lambda: calls == [False])
        states.put({"mirror": False, "channel": 5})  # not in the key: no recompute
        wake.set()
        time.sleep(0.1)
        states.put({"mirror": True, "channel": 5})
        wake.set()
        assert wait_until(lambda: calls == [False, True])
    finally:
        thread.stop()
        thread.join(2)


def test_background_task_reports_progress_and_result_and_can_be_cancelled():
    runner = TaskRunner()
    gate = threading.Event()

    def work(task):
        task.report(0.5, "half")
        gate.wait(2)
        return 42

    handle = runner.start("dream", work, label="dreaming")
    assert wait_until(lambda: handle.progress == 0.5)
    assert runner.busy and handle.label == "half" and [h.name for h in runner.active()] == ["dream"]
    gate.set()
    handle.join(2)
    assert (handle.status, handle.result, handle.progress) == ("done", 42, 1.0)
    assert handle.age() >= 0 and not runner.busy

    def endless(task):
        while True:
            task.check()
            time.sleep(0.005)

    handle = runner.start("dream", endless)
    assert runner.cancel() == 1
    handle.join(2)
    assert handle.status == "cancelled" and runner.latest("dream") is handle


def test_a_failing_task_is_reported_not_raised_and_a_newer_start_supersedes():
    runner = TaskRunner()
    failed = runner.start("units", lambda task: 1 / 0)
    failed.join(2)
    assert failed.status == "failed" and "ZeroDivisionError" in failed.error
    first = runner.start("units", lambda task: (time.sleep(0.05), task.check()))
    second = runner.start("units", lambda task: "new")
    first.join(2)
    second.join(2)
    assert first.status == "cancelled" and second.result == "new"


def test_snapshot_writes_window_panes_and_json_and_never_overwrites(tmp_path):
    window = np.random.default_rng(0).integers(0, 255, (60, 100, 3), dtype=np.uint8)
    panes = {"input": Rect(0, 0, 40, 40), "status": Rect(0, 40, 100, 20)}
    files = write_snapshot(snapshot_paths(tmp_path, panes), window, panes, {"model": "lite0", "channel": 3})
    assert files.window.name == "snapshot-0000.png"
    assert np.array_equal(cv2.imread(str(files.window)), window)
    assert np.array_equal(cv2.imread(str(files.panes["status"])), window[40:60, 0:100])
    info = json.loads(files.state.read_text())
    assert info["channel"] == 3 and info["files"]["panes"]["input"] == "snapshot-0000-input.png"
    again = snapshot_paths(tmp_path, panes)
    assert again.number == 1
    assert snapshot_paths(tmp_path, panes, start=5).number == 5
    assert not list(tmp_path.glob(".*"))  # no temporaries left


def test_recorder_finalises_a_playable_mp4(tmp_path):
    recorder = Recorder(tmp_path, (64, 48), fps=50.0)
    recorder.start()
    for i in range(5):
        recorder.offer(np.full((48, 64, 3), 40 * i, np.uint8))
        time.sleep(0.03)
    path = recorder.finish()
    assert path is not None and path.name == "recording-0000.mp4"
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (48, 64, 3)
    assert not list(tmp_path.glob(".*"))


def test_no_display_is_one_clear_error_before_any_window():
    with pytest.raises(DeepvisError, match="no display.*deepvis analyze"):
        check_gui({})


def test_an_unreachable_local_display_is_reported_instead_of_aborting():
    with pytest.raises(DeepvisError, match="cannot reach the X display :4321"):
        check_gui({"DISPLAY": ":4321"})


def test_throttled_progress_reports_the_first_call_then_at_most_once_per_interval(monkeypatch):
    import toolbox.app.tasks as tasks_module

    now = [1024.0]
    monkeypatch.setattr(tasks_module.time, "monotonic", lambda: now[0])
    reported = []
    progress = tasks_module.throttled(reported.append, every_s=0.25)
    for step in range(10):  # 1/16 s apart (exact in binary): 0.0 reported, then every fourth call
        progress(step / 10)
        now[0] += 0.0625
    assert reported == [0.0, 0.4, 0.8]
