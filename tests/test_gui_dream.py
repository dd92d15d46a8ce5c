"""End-to-end: the dream keys of `deepvis live demo` in a real window on a private Xvfb.

Skipped (with the reason) where Xvfb, xdotool or ImageMagick's import are missing; required in CI.
Dreams use a shallow layer and one octave of 500 steps (a `--config` overlay written here): several
seconds on a CPU, long enough to cancel with Esc, short enough to wait for.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from gui_harness import LiveApp, region
from toolbox.app.overlays import hex_colour
from toolbox.config import load_config
from toolbox.render.panes import fit_image

pytestmark = pytest.mark.gui

CONFIG = load_config()
PANES = CONFIG.layout.panes
ACCENT = hex_colour(CONFIG.live.accent_colour)  # the task progress bars' fill
CAPTION = 40  # rows at the top of the dream pane that carry its caption


def demo_app(xvfb, cwd, config: str) -> LiveApp:
    """`deepvis live demo` on _blocks.2 with ``config`` as a --config overlay (cwd/overlay.yaml), outputs in
    cwd/out, unit images in cwd/cache (out of the user's cache); returned once the first activations show."""
    (cwd / "overlay.yaml").write_text(config)
    env = dict(xvfb.env)
    xvfb.env["DEEPVIS_CACHE"] = str(cwd / "cache")
    try:
        live = LiveApp(xvfb, ["demo", "--layer", "_blocks.2", "--config", str(cwd / "overlay.yaml"),
                              "--out", str(cwd / "out")], cwd)
    finally:
        xvfb.env.clear()
        xvfb.env.update(env)
    live.shots, live.out = cwd, cwd / "out"
    try:
        live.wait_window()
        live.wait_for(lambda: len(np.unique(region(live.capture(cwd / "s.png"), PANES["mosaic"]).reshape(-1, 3),
                                            axis=0)) > 50, 60, 0.3, "the first activations")
    except BaseException:
        live.stop()
        raise
    return live


@pytest.fixture(scope="module")
def app(xvfb, tmp_path_factory):
    """One app for both tests (start-up dominates their time). 500 steps of one octave on _blocks.2:
    several seconds on a CPU, long enough to cancel, short enough to wait for."""
    live = demo_app(xvfb, tmp_path_factory.mktemp("dream"),
                    "dream: {steps: 500, octaves: 1}\nunits: {size: 16, steps: 2}\n")
    yield live
    live.stop()


def bar_pixels(shot: np.ndarray) -> int:
    return int(np.count_nonzero(np.all(region(shot, PANES["progress"]) == ACCENT, axis=2)))  # the bars' own strip


def test_esc_cancels_a_dream_while_the_window_keeps_playing(app):
    shot = lambda: app.capture(app.shots / "s.png")  # noqa: E731
    app.key("d")
    app.wait_for(lambda: bar_pixels(shot()) > 0, 20, 0.1, "the dream's progress bar")
    first = region(shot(), PANES["input"])  # while dreaming, the input pane keeps playing the video
    app.wait_for(lambda: not np.array_equal(region(shot(), PANES["input"]), first), 5, 0.1, "a new input frame")
    app.key("Escape")
    app.wait_for(lambda: bar_pixels(shot()) == 0, 5, 0.1, "the bar to go")
    time.sleep(0.3)
    assert app.process.poll() is None, "Esc quit instead of cancelling the dream"
    first = region(shot(), PANES["input"])
    app.wait_for(lambda: not np.array_equal(region(shot(), PANES["input"]), first), 5, 0.1,
                 "the input to keep changing after the cancel")
    assert not list(app.out.glob("dream-*.png"))  # a cancelled dream is not saved
    app.key("d")  # back to the normal view


def test_dream_key_shows_the_dream_big_in_the_mosaic_pane_and_saves_a_png(app):
    app.key("space")  # freeze: the dreamed frame is the one on screen, and only keys change the picture
    before = app.wait_idle(app.shots)
    rect = PANES["mosaic"]
    assert len(np.unique(region(before, rect).reshape(-1, 3), axis=0)) > 50  # the activations
    app.key("d")
    saved = app.out / "dream-0000.png"
    app.wait_for(saved.exists, 60, 0.2, "the dream PNG")
    dream = cv2.imread(str(saved))
    expected = fit_image(dream, rect.h, rect.w, interpolation=cv2.INTER_LINEAR)[CAPTION:]
    shot = app.wait_for(lambda: (lambda s: s if np.array_equal(region(s, rect)[CAPTION:], expected) else None)(
        app.capture(app.shots / "s.png")), 10, 0.2, "the dream in the mosaic pane")
    assert dream.shape == (144, 176, 3)  # the demo frame's size
    assert np.abs(region(shot, rect).astype(int) - region(before, rect)).mean() > 20
    assert np.array_equal(region(shot, PANES["input"]), region(before, PANES["input"]))  # still frozen
    app.key("d")  # the same key returns to the activation mosaic
    back = app.wait_idle(app.shots)
    assert np.array_equal(region(back, rect), region(before, rect))
    assert list(app.out.glob("dream-*.png")) == [saved]
    assert not list(app.out.glob(".*"))  # no temporary left behind
    app.key("q")
    assert app.process.wait(10) == 0, app.output()
