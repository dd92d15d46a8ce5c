"""End-to-end: the neighbours (Shift+n) and map (Shift+m) panes of `deepvis live` in a real window on a
private Xvfb: they appear on their key and follow the playing demo clip (this session's frames); Shift+p
fits a UMAP map in the background and shows it."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from gui_harness import LiveApp, region
from toolbox.app.overlays import hex_colour
from toolbox.config import load_config
from toolbox.render.atlas import BACKGROUND
from toolbox.render.montage import NEIGHBOUR_COLOUR
from toolbox.render.panes import PANE_BACKGROUND

pytestmark = pytest.mark.gui

CONFIG = load_config()
PANES = CONFIG.layout.panes
ACCENT = hex_colour(CONFIG.live.accent_colour)  # the task progress bars' fill


def shifted(app: LiveApp, letter: str) -> None:
    """Shift held down, then the letter, as a person types it: xdotool's "shift+n" sends no Shift event
    that OpenCV's Qt window reports (a real Shift key does), and the window keeps only the last key
    pressed between two polls, so the letter follows the Shift key after a pause, as a hand's does."""
    app._xdotool("windowfocus", "--sync", app.wid)
    app._xdotool("keydown", "Shift_L")
    time.sleep(0.4)
    app._xdotool("key", letter)
    app._xdotool("keyup", "Shift_L")
    time.sleep(0.2)


def neighbour_frames(shot: np.ndarray) -> int:
    """Pixels of the side pane in the neighbours' tile frame colour."""
    return int(np.all(region(shot, PANES["side"]) == NEIGHBOUR_COLOUR, axis=2).sum())


def atlas_background(shot: np.ndarray) -> float:
    """Share of the zoom pane in the atlas' background colour."""
    return float(np.all(region(shot, PANES["zoom"]) == BACKGROUND, axis=2).mean())


def press_until(app: LiveApp, letter: str, shown, shots, timeout: float = 60) -> np.ndarray:
    """Shift+letter, again every 15 s while ``shown(screenshot)`` is false: on a machine so busy that
    the window is not polled between the Shift key and the letter, Qt keeps only the letter."""
    deadline = time.monotonic() + timeout
    while True:
        shifted(app, letter)
        try:
            return app.wait_for(lambda: (lambda shot: shot if shown(shot) else None)(app.capture(shots)),
                                min(15, max(1, deadline - time.monotonic())), 0.3, f"the pane of Shift+{letter}")
        except AssertionError:
            if time.monotonic() >= deadline:
                raise


def bar_pixels(shot: np.ndarray) -> int:
    """Pixels of the progress strip in the bars' fill colour: a background task is running."""
    return int(np.count_nonzero(np.all(region(shot, PANES["progress"]) == ACCENT, axis=2)))


def map_pane_on(shot: np.ndarray) -> bool:
    """The zoom pane shows the map pane (the atlas, or the grey pane saying it is being fitted)."""
    zoom = region(shot, PANES["zoom"])
    return float((np.all(zoom == PANE_BACKGROUND, axis=2) | np.all(zoom == BACKGROUND, axis=2)).mean()) > 0.3


def test_neighbours_and_map_panes_appear_on_their_keys_and_change_with_the_frame(xvfb, tmp_path):
    app = LiveApp(xvfb, ["demo", "--out", str(tmp_path / "out")], tmp_path)
    try:
        app.wait_window()
        app.wait_for(lambda: region(app.capture(tmp_path / "s.png"), PANES["mosaic"]).std() > 5, 60, 0.3,
                     "the first result")
        before = app.capture(tmp_path / "before.png")
        assert neighbour_frames(before) < 500 and not map_pane_on(before)
        # the neighbours pane: six framed thumbnails; the map pane: an atlas once eight frames were seen
        press_until(app, "n", lambda shot: neighbour_frames(shot) > 2000, tmp_path / "n.png")
        press_until(app, "m", lambda shot: map_pane_on(shot), tmp_path / "m.png")
        app.wait_for(lambda: atlas_background(app.capture(tmp_path / "m.png")) > 0.3, 60, 0.3, "the map's atlas")
        a = app.capture(tmp_path / "a.png")
        assert neighbour_frames(a) > 2000  # both on

        def both_changed():
            shot = app.capture(tmp_path / "b.png")
            return all(not np.array_equal(region(shot, PANES[p]), region(a, PANES[p])) for p in ("side", "zoom"))

        app.wait_for(both_changed, 30, 0.3, "both panes to follow the clip")
        # Shift+p: UMAP, fitted in the background (its progress bar), then the map pane shows it
        pca = press_until(app, "p", lambda shot: bar_pixels(shot) > 0, tmp_path / "p.png")
        umap = app.wait_for(lambda: (lambda shot: shot if bar_pixels(shot) == 0 else None)(
            app.capture(tmp_path / "umap.png")), 90, 0.3, "the UMAP fit to end")
        assert atlas_background(umap) > 0.3 and not np.array_equal(region(pca, PANES["zoom"]),
                                                                     region(umap, PANES["zoom"]))
        app.key("s")
        state = tmp_path / "out" / "snapshot-0000.json"
        app.wait_for(state.exists, 15, what="the snapshot JSON")
        assert "map UMAP" in json.loads(state.read_text())["status"]
        app.key("q")
        assert app.process.wait(10) == 0, app.output()
    finally:
        app.stop()
