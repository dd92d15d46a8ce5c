"""End-to-end: the Y (stylise) key of `deepvis live demo` in a real window on a private Xvfb (the I key and its
Esc cancel are tested on the plugin itself, tests/test_app_style.py).

Skipped (with the reason) where Xvfb, xdotool or ImageMagick's import are missing; required in CI.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from gui_harness import LiveApp, region
from test_gui_dream import CAPTION, PANES, bar_pixels

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def app(xvfb, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("style")
    (cwd / "style.yaml").write_text("style: {invert_steps: 3000, invert_max_side: 96, steps: 3, live_steps: 1, "
                                    "live_max_side: 96}\nunits: {size: 16, steps: 2}\n")
    env = dict(xvfb.env)
    xvfb.env["DEEPVIS_CACHE"] = str(cwd / "cache")
    try:
        live = LiveApp(xvfb, ["demo", "--layer", "_blocks.2", "--config", str(cwd / "style.yaml"),
                              "--out", str(cwd / "out")], cwd)
    finally:
        xvfb.env.clear()
        xvfb.env.update(env)
    live.shots, live.out = cwd, cwd / "out"
    live.wait_window()
    live.wait_for(lambda: len(np.unique(region(live.capture(cwd / "s.png"), PANES["mosaic"]).reshape(-1, 3),
                                        axis=0)) > 50, 60, 0.3, "the first activations")
    yield live
    live.stop()


def test_shift_y_shows_a_stylised_frame_that_differs_from_the_input(app):
    app.key("space")  # freeze
    before = app.wait_idle(app.shots)
    rect = PANES["mosaic"]
    app.key("shift+y")
    frozen_input = cv2.resize(region(before, PANES["input"]), (rect.w, rect.h))

    def stylised():
        s = app.capture(app.shots / "s.png")
        pane = region(s, rect)[CAPTION:]
        changed = np.abs(pane.astype(int) - region(before, rect)[CAPTION:]).mean() > 10
        return s if changed and len(np.unique(pane.reshape(-1, 3), axis=0)) > 200 else None

    shot = app.wait_for(stylised, 60, 0.3, "a stylised frame in the mosaic pane")
    assert np.abs(region(shot, rect)[CAPTION:].astype(int) - frozen_input[CAPTION:]).mean() > 10
    for _ in range(3):  # through the other styles, then off
        app.key("shift+y")
    back = app.wait_idle(app.shots)
    assert np.abs(region(back, rect).astype(int) - region(before, rect)).mean() < 5
    app.key("space")
