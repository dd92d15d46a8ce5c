"""End-to-end: the unit column and the filter view of `deepvis live` in a real window on a private Xvfb.

Skipped (with the reason) where Xvfb, xdotool or ImageMagick's import are missing; required in CI.
Unit images go to a temporary cache at a tiny size, so the background work stays light.
"""
from __future__ import annotations


import numpy as np
import pytest

from gui_harness import LiveApp, region
from toolbox.config import load_config
from toolbox.render.filters import filters_view, layer_conv_weight
from toolbox.render.panes import fit_image
from toolbox.render.unit_column import EMPTY, SEP

pytestmark = pytest.mark.gui

PANES = load_config().layout.panes


def colourful(pane: np.ndarray) -> float:
    b, g, r = (pane[..., i].astype(int) for i in range(3))
    return float(np.mean(np.abs(b - g) + np.abs(g - r)))


def patch_pixels(shot: np.ndarray) -> int:
    """Pixels of the side pane's patch grid (its lower part) that are neither empty cells nor lines."""
    side = region(shot, PANES["side"])
    grid = side[side.shape[0] // 2 + 40 :]
    return int(np.count_nonzero(~np.all(grid == EMPTY, axis=2) & ~np.all(grid == SEP, axis=2)
                                & (grid.max(axis=2) > 60)))


def test_filters_key_shows_the_first_layers_rgb_filters_and_the_side_pane_collects_patches(xvfb, tmp_path, lite0):
    (tmp_path / "units.yaml").write_text("units: {size: 16, steps: 2}\n")
    xvfb.env["DEEPVIS_CACHE"] = str(tmp_path / "cache")
    app = LiveApp(xvfb, ["demo", "--layer", "_relu0", "--config", str(tmp_path / "units.yaml"),
                         "--out", str(tmp_path / "out")], tmp_path)
    try:
        app.wait_window()
        app.wait_for(lambda: patch_pixels(app.capture(tmp_path / "s.png")) > 2000, 60, 0.3,
                     "top-9 patches in the side pane")
        app.key("space")  # freeze: from now on only keys change the picture
        before = app.wait_idle(tmp_path)
        app.key("w")
        after = app.wait_idle(tmp_path)
        mosaic = region(after, PANES["mosaic"])
        rect = PANES["mosaic"]
        expected = fit_image(filters_view(layer_conv_weight(lite0.module, "_relu0"), 0, rect.h, rect.w),
                             rect.h, rect.w, enlarge=False)
        assert np.array_equal(mosaic, expected)  # the 32 RGB stem filters, not the activations
        assert colourful(mosaic) > 10 > colourful(region(before, PANES["mosaic"]))  # grey activations before
        assert not np.array_equal(region(before, PANES["status"]), region(after, PANES["status"]))  # "filters"
        assert patch_pixels(after) > 2000
        app.key("w")
        back = app.wait_idle(tmp_path)
        assert colourful(region(back, PANES["mosaic"])) < 10
        app.key("q")
        assert app.process.wait(10) == 0, app.output()
    finally:
        app.stop()
