"""End-to-end: the neighbours (Shift+n) and map (Shift+m) panes of `deepvis live` in a real window on a
private Xvfb: they appear on their key and follow the playing demo clip (this session's frames)."""
from __future__ import annotations

import numpy as np
import pytest

from gui_harness import LiveApp, region
from toolbox.config import load_config
from toolbox.render.atlas import BACKGROUND
from toolbox.render.montage import NEIGHBOUR_COLOUR

pytestmark = pytest.mark.gui

PANES = load_config().layout.panes


def shifted(app: LiveApp, letter: str) -> None:
    """Shift held down, then the letter: as a keyboard does it (xdotool's "shift+n" sends no Shift
    event that OpenCV's Qt window reports, a real Shift key does)."""
    app._xdotool("windowfocus", "--sync", app.wid)
    app._xdotool("keydown", "Shift_L")
    app._xdotool("key", letter)
    app._xdotool("keyup", "Shift_L")


def neighbour_frames(shot: np.ndarray) -> int:
    """Pixels of the side pane in the neighbours' tile frame colour."""
    return int(np.all(region(shot, PANES["side"]) == NEIGHBOUR_COLOUR, axis=2).sum())


def atlas_background(shot: np.ndarray) -> float:
    """Share of the zoom pane in the atlas' background colour."""
    return float(np.all(region(shot, PANES["zoom"]) == BACKGROUND, axis=2).mean())


def test_neighbours_and_map_panes_appear_on_their_keys_and_change_with_the_frame(xvfb, tmp_path):
    app = LiveApp(xvfb, ["demo", "--out", str(tmp_path / "out")], tmp_path)
    try:
        app.wait_window()
        app.wait_for(lambda: region(app.capture(tmp_path / "s.png"), PANES["mosaic"]).std() > 5, 60, 0.3,
                     "the first result")
        before = app.capture(tmp_path / "before.png")
        assert neighbour_frames(before) < 500 and atlas_background(before) < 0.1
        shifted(app, "n")
        shifted(app, "m")
        # the neighbours pane: six framed thumbnails; the map pane: an atlas once eight frames were seen
        app.wait_for(lambda: neighbour_frames(app.capture(tmp_path / "n.png")) > 2000, 60, 0.3, "the neighbours pane")
        app.wait_for(lambda: atlas_background(app.capture(tmp_path / "m.png")) > 0.3, 60, 0.3, "the map pane")
        a = app.capture(tmp_path / "a.png")

        def both_changed():
            shot = app.capture(tmp_path / "b.png")
            return all(not np.array_equal(region(shot, PANES[p]), region(a, PANES[p])) for p in ("side", "zoom"))

        app.wait_for(both_changed, 30, 0.3, "both panes to follow the clip")
        shifted(app, "n")  # off again: the side column is back, the map stays
        app.wait_for(lambda: neighbour_frames(app.capture(tmp_path / "c.png")) < 500, 20, 0.3, "the side column")
        assert atlas_background(app.capture(tmp_path / "c.png")) > 0.3
        app.key("q")
        assert app.process.wait(10) == 0, app.output()
    finally:
        app.stop()
