"""End-to-end: the I (invert) and Y (stylise) keys of `deepvis live demo` in a real window on a private Xvfb.

One app for both keys. The inversion is set long (20000 steps at 96 px: a minute or more on a CPU) so that Esc
always finds it running: while it runs the mosaic pane shows the dimmed frame and a progress bar;
Esc leaves the partial reconstruction in the pane (not saved) and the bar goes; I again returns to
the mosaic (the inversion view stays in the pane until then, so Y could not show). Shift+letter is sent
as a hand types it (test_gui_latent.press_until): xdotool's "shift+i" reaches OpenCV's window as a
plain "i" about half the time, which is another key (channel up).

Skipped (with the reason) where Xvfb, xdotool or ImageMagick's import are missing; required in CI.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from gui_harness import region
from test_gui_dream import CAPTION, PANES, bar_pixels, demo_app
from test_gui_latent import press_until, shifted

pytestmark = pytest.mark.gui


def pane_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two mosaic panes below their caption rows, 0-255."""
    return float(np.abs(a[CAPTION:].astype(int) - b[CAPTION:].astype(int)).mean())


def test_i_inverts_and_esc_cancels_then_y_stylises(xvfb, tmp_path):
    app = demo_app(xvfb, tmp_path, "style: {invert_steps: 20000, invert_max_side: 96, steps: 3, live_steps: 1, "
                                  "live_max_side: 96}\nunits: {size: 16, steps: 2}\n")
    shot = lambda: app.capture(tmp_path / "s.png")  # noqa: E731
    rect = PANES["mosaic"]
    try:
        app.key("space")  # freeze: the frame to invert and stylise stays put
        before = app.wait_idle(tmp_path)
        frame = cv2.resize(region(before, PANES["input"]), (rect.w, rect.h), interpolation=cv2.INTER_AREA)

        # I: the inversion runs (its bar in the progress strip), the pane shows the frame dimmed
        running = press_until(app, "i", lambda s: bar_pixels(s) > 0, tmp_path / "i.png")
        time.sleep(1.0)  # some steps from the noise start
        app.key("Escape")
        app.wait_for(lambda: bar_pixels(shot()) == 0, 5, 0.1, "the inversion's bar to go after Esc")
        cancelled = app.wait_idle(tmp_path)
        assert app.process.poll() is None, "Esc quit instead of cancelling the inversion"
        partial = region(cancelled, rect)
        assert pane_difference(partial, region(running, rect)) > 10  # the dimmed frame gave way to the reconstruction
        assert pane_difference(partial, frame) > 10  # which is not the input
        assert not list((tmp_path / "out").glob("invert*.png"))  # a cancelled inversion is not saved
        shifted(app, "i")  # back to the mosaic (a plain "i", a channel move, returns too)
        app.wait_for(lambda: pane_difference(region(shot(), rect), partial) > 10, 10, 0.2, "the mosaic again")

        # Y: a stylised frame in the pane, unlike the input and unlike the mosaic
        def stylised(s: np.ndarray) -> bool:
            pane = region(s, rect)
            return (pane_difference(pane, region(before, rect)) > 10 and pane_difference(pane, partial) > 10
                    and len(np.unique(pane[CAPTION:].reshape(-1, 3), axis=0)) > 200)

        styled = press_until(app, "y", stylised, tmp_path / "y.png")
        assert pane_difference(region(styled, rect), frame) > 10
        app.key("q")
        assert app.process.wait(10) == 0, app.output()
    finally:
        app.stop()
