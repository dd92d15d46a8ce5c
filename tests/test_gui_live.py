"""End-to-end: `deepvis live` in a real window on a private Xvfb, driven with real key presses.

Skipped (with the reason) where Xvfb, xdotool or ImageMagick's import are missing; in CI
(CI set) they are required, so a missing tool fails instead of skipping silently.
"""
from __future__ import annotations

import http.server
import json
import threading
import time

import cv2
import numpy as np
import pytest

from gui_harness import LiveApp, region
from toolbox.config import load_config
from toolbox.render.mosaic import SEPARATOR, mosaic_geometry

pytestmark = pytest.mark.gui

LAYOUT = load_config().layout
PANES = LAYOUT.panes


def separator_columns(mosaic: np.ndarray) -> int:
    """Number of vertical separator lines (runs of separator-coloured columns) in a mosaic pane."""
    is_sep = np.all(mosaic == SEPARATOR, axis=2).mean(axis=0) > 0.5
    return int(np.count_nonzero(is_sep[1:] & ~is_sep[:-1]) + is_sep[0])


def shows_activations(shot: np.ndarray) -> bool:
    return len(np.unique(region(shot, PANES["mosaic"]).reshape(-1, 3), axis=0)) > 50


@pytest.fixture(scope="module")
def demo(xvfb, tmp_path_factory):
    """One app for the demo tests (model loading dominates their time): start at a 112x14x14 layer."""
    cwd = tmp_path_factory.mktemp("live")
    app = LiveApp(xvfb, ["demo", "--layer", "_blocks.10", "--out", str(cwd / "out")], cwd)
    app.wait_window()
    app.shots = cwd
    app.wait_for(lambda: shows_activations(app.capture(cwd / "start.png")), 60, 0.3, "the first activations")
    app.wait_moving(PANES["input"])  # the clip plays on the screen, not only in the app
    yield app
    app.stop()


def test_next_layer_changes_the_mosaic_geometry_and_the_status_text(demo):
    demo.key("space")  # freeze, so that only the key changes the picture
    before = demo.wait_idle(demo.shots)
    demo.key("Next")  # PageDown: _blocks.10 (112x14x14) -> _blocks.11 (192x7x7)
    after = demo.wait_idle(demo.shots)
    assert separator_columns(region(before, PANES["mosaic"])) == mosaic_geometry(112, 14, 14, 640, 640).cols + 1
    assert separator_columns(region(after, PANES["mosaic"])) == mosaic_geometry(192, 7, 7, 640, 640).cols + 1
    assert not np.array_equal(region(before, PANES["status"]), region(after, PANES["status"]))
    assert np.array_equal(region(before, PANES["input"]), region(after, PANES["input"]))  # frozen input


def test_snapshot_writes_pngs_and_json_and_the_png_equals_the_screen(demo):
    out = demo.shots / "out"
    demo.wait_idle(demo.shots)
    demo.key("s")
    state = out / "snapshot-0000.json"
    demo.wait_for(state.exists, 15, what="the snapshot JSON")
    screen = demo.capture(demo.shots / "after_snapshot.png")
    saved = cv2.imread(str(out / "snapshot-0000.png"))
    assert saved.shape == screen.shape == (LAYOUT.height, LAYOUT.width, 3)
    assert np.array_equal(saved, screen)
    for name, rect in PANES.items():
        assert np.array_equal(cv2.imread(str(out / f"snapshot-0000-{name}.png")), region(screen, rect))
    info = json.loads(state.read_text())
    assert info["model"] == "lite0" and info["layer"]["name"] == "_blocks.11"
    assert info["layer"]["shape"] == [192, 7, 7] and info["channel"] == 0
    assert isinstance(info["frame_index"], int) and len(info["predictions"]) == 5
    demo.key("s")  # a second snapshot never overwrites the first
    demo.wait_for((out / "snapshot-0001.json").exists, 15, what="the second snapshot")
    assert np.array_equal(cv2.imread(str(out / "snapshot-0000.png")), saved)


def playable_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_record_key_writes_a_playable_mp4_of_the_window(demo):
    out = demo.shots / "out"
    demo.key("r")
    time.sleep(1.0)
    demo.key("r")
    demo.wait_for((out / "recording-0000.mp4").exists, 10, what="the finished recording")
    frames = playable_frames(out / "recording-0000.mp4")
    assert len(frames) >= 5 and frames[0].shape == (LAYOUT.height, LAYOUT.width, 3)
    assert not list(out.glob(".*"))  # no temporary left behind


def test_q_exits_cleanly_within_two_seconds(demo):
    demo.wait_idle(demo.shots)
    demo.key("q")
    pressed = time.monotonic()
    code = demo.process.wait(10)
    elapsed = time.monotonic() - pressed
    assert code == 0, demo.output()
    assert elapsed < 2.0, f"took {elapsed:.2f} s to exit"


# --- reconnect -----------------------------------------------------------------------------------

class MjpegServer:
    """A 30 fps multipart MJPEG stream of a coloured, moving picture on 127.0.0.1."""

    def __init__(self, port: int = 0):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while owner.running:
                        image = np.zeros((240, 320, 3), np.uint8)
                        image[:] = (40, 120, 220)
                        x = (i * 7) % 280
                        image[60:180, x : x + 40] = (30, 220, 60)
                        jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        i += 1
                        time.sleep(1 / 30)
                except OSError:
                    pass

        self.running = True
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def stop(self) -> None:
        self.running = False
        self.server.shutdown()
        self.server.server_close()


def is_colourful(pane: np.ndarray) -> bool:
    b, g, r = (pane[..., i].astype(int) for i in range(3))
    return float(np.mean(np.abs(b - g) + np.abs(g - r))) > 20


def test_a_stream_that_stops_shows_no_signal_and_resumes_and_closing_the_window_quits(xvfb, tmp_path):
    server = MjpegServer()
    app = LiveApp(xvfb, [server.url, "--out", str(tmp_path / "out")], tmp_path)
    try:
        app.wait_window()
        app.wait_for(lambda: is_colourful(region(app.capture(tmp_path / "s.png"), PANES["input"])), 60, 0.3,
                     "the stream's frames")
        port = server.port
        server.stop()
        app.wait_for(lambda: not is_colourful(region(app.capture(tmp_path / "s.png"), PANES["input"])), 20, 0.3,
                     "the greyed 'no signal' input")
        time.sleep(1.0)  # a few failed reconnects while the server is down
        assert app.process.poll() is None
        server = MjpegServer(port)
        first = app.wait_for(lambda: (lambda p: p if is_colourful(p) else None)(
            region(app.capture(tmp_path / "s.png"), PANES["input"])), 30, 0.3, "frames after the restart")
        app.wait_for(lambda: not np.array_equal(region(app.capture(tmp_path / "s.png"), PANES["input"]), first),
                     10, 0.2, "moving frames after the restart")
        # Closing the window (as a window manager's close button does) quits cleanly and finalises
        # a recording in progress.
        app.key("r")
        time.sleep(1.0)
        app.close_window()
        assert app.process.wait(10) == 0, app.output()
        frames = playable_frames(tmp_path / "out" / "recording-0000.mp4")
        assert len(frames) >= 5
    finally:
        app.stop()
        server.stop()



WINDOW_CHECK = """
import numpy as np
from toolbox.app.window import Window
from toolbox.app.x11_check import X11Display
window = Window("deepvis-check")
image = np.zeros((60, 80, 3), np.uint8)
image[:] = (10, 20, 30)  # BGR
window.show(image)  # the first show checks, through the X server, that the window is painted
with X11Display() as display:
    wid = display.find_window("deepvis-check")
    print(window.ensure_painted(), hex(display.pixel(wid, 40, 30)))
    display.remap(wid)  # what ensure_painted does to a window Qt never painted
    window.poll_key(300)
    print(hex(display.pixel(wid, 40, 30)))
"""


def test_the_window_reads_its_pixels_back_from_the_x_server(xvfb, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", WINDOW_CHECK], env=xvfb.env, capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    lines = out.stdout.split("\n")
    assert lines[:2] == ["True 0x1e140a", "0x1e140a"], out.stdout + out.stderr  # 0xRRGGBB of (30, 20, 10)
