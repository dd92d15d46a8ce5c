"""End-to-end: the saliency key of `deepvis live demo` in a real window on a private Xvfb."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gui_harness import LiveApp, region
from toolbox.config import load_config

pytestmark = pytest.mark.gui

PANES = load_config().layout.panes


def change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(H, W) largest per-channel difference between two pictures of a pane."""
    return np.abs(after.astype(int) - before.astype(int)).max(axis=2)


def test_method_key_draws_a_heatmap_over_the_input_and_names_the_method_in_the_status(xvfb, tmp_path):
    app = LiveApp(xvfb, ["demo", "--layer", "_blocks.10", "--out", str(tmp_path / "out")], tmp_path)
    try:
        app.wait_window()
        app.wait_for(lambda: len(np.unique(region(app.capture(tmp_path / "s.png"), PANES["mosaic"]).reshape(-1, 3),
                                           axis=0)) > 50, 60, 0.3, "the first activations")
        app.key("space")  # freeze the input: only the key changes the picture
        before = app.wait_idle(tmp_path)
        app.key("g")  # saliency: off -> gradient
        after = app.wait_for(lambda: (lambda shot: shot if (change(region(before, PANES["input"]), region(
            shot, PANES["input"])) > 40).mean() > 0.005 else None)(app.capture(tmp_path / "g.png")), 20, 0.3,
            "the heatmap over the input")
        assert np.median(change(region(before, PANES["input"]), region(after, PANES["input"]))) < 10  # no wash
        assert not np.array_equal(region(before, PANES["status"]), region(after, PANES["status"]))
        app.key("s")
        state = tmp_path / "out" / "snapshot-0000.json"
        app.wait_for(state.exists, 15, what="the snapshot JSON")
        info = json.loads(state.read_text())
        assert info["state"]["overlay"] == "gradient"
        assert "gradient of unit _blocks.10:0 (cursor)" in info["status"] and "torch CPU" in info["status"]
        app.key("q")
        assert app.process.wait(10) == 0, app.output()
    finally:
        app.stop()
