"""The compute step and the whole live loop with a stand-in window (no display needed)."""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import numpy as np
import pytest

import toolbox.app.live as live_module
from toolbox.app.compute import LiveCompute
from toolbox.app.live import LiveApp, LiveOptions
from toolbox.app.state import AppState
from toolbox.app.threads import Captured
from toolbox.config import load_config
from toolbox.sources import open_source
from toolbox.sources.frame import Frame

CONFIG = load_config()


def captured(image: np.ndarray, index: int = 0) -> Captured:
    return Captured(Frame(image, index, 0.0), time.perf_counter())


def test_compute_step_gives_every_layer_predictions_and_extension_stages(lite0, cat_bgr):
    step = LiveCompute(lite0, lite0.layers, top_k=5)
    step.add_stage("mean_input", lambda result, state: float(result.view.mean()), depends_on=("overlay",))
    with step:
        result = step(captured(cat_bgr), AppState(layer=3))
    assert set(result.activations) == set(lite0.layers)
    act = result.activations["_blocks.8"]
    assert act.shape == (112, 14, 14) and act.device.type == "cpu"
    assert len(result.predictions) == 5 and "cat" in result.predictions[0].label
    assert result.extras["mean_input"] == pytest.approx(float(result.view.mean()))
    assert result.channel_means("_blocks.8").shape == (112,)


def test_the_compute_key_holds_mirror_mode_and_stage_dependencies(lite0, cat_bgr):
    step = LiveCompute(lite0, ["_blocks.2"])
    step.add_stage("saliency", lambda result, state: None, depends_on=("overlay",))
    state = AppState(layer=0)
    assert step.key(state) != step.key(dataclasses.replace(state, mirror=True))
    assert step.key(state) != step.key(dataclasses.replace(state, overlay="gradcam"))
    assert step.key(state) == step.key(dataclasses.replace(state, channel=7, layer=0, help=True))
    # even margins, so that the centre crop of the mirror image is the mirror of the crop
    image = np.ascontiguousarray(cat_bgr[:, :450])
    with step:
        plain = step(captured(image), state)
        flipped = step(captured(image), dataclasses.replace(state, mirror=True))
    assert np.array_equal(flipped.view, plain.view[:, ::-1])


class ScriptedWindow:
    """Stands in for the OpenCV window: records shown images, presses keys once results are shown."""

    script: list[int] = []

    def __init__(self, title: str):
        self.images: list[np.ndarray] = []
        self.keys = list(self.script)
        self.polls = 0
        self.closed = False

    def show(self, image: np.ndarray) -> None:
        self.images.append(image)

    def poll_key(self, wait_ms: int = 1) -> int:
        time.sleep(0.005)
        self.polls += 1
        if len(self.images) > 10 and self.polls % 20 == 0 and self.keys:
            return self.keys.pop(0)
        return -1

    def close(self) -> None:
        pass


def test_the_loop_applies_keys_writes_a_snapshot_and_shuts_down_cleanly(lite0, tmp_path, monkeypatch):
    ScriptedWindow.script = [65366, 65363, 65363, ord("z"), ord("s"), ord("q")]  # PgDn, Right x2, zoom, snap, quit
    monkeypatch.setattr(live_module, "Window", ScriptedWindow)
    config = load_config(overrides={"live.snapshot_dir": str(tmp_path)})
    app = LiveApp(open_source("demo", loop=True), lite0, config, "_blocks.8")
    start = app.state
    before = threading.active_count()
    assert app.run() == 0
    assert (app.state.layer, app.state.channel, app.state.zoom) == (start.layer + 1, 2, "overlay")
    assert not app.capture.is_alive() and not app.compute_thread.is_alive()
    assert threading.active_count() <= before
    info = json.loads((tmp_path / "snapshot-0000.json").read_text())
    assert info["layer"]["name"] == "_blocks.9" and info["channel"] == 2 and len(info["predictions"]) == 5
    shown = app.window.images
    assert all(image.shape == (CONFIG.layout.height, CONFIG.layout.width, 3) for image in shown)
    assert app.stats.displayed > 0 and app.compute_thread.stats.computed > 0


def test_plugins_install_stages_and_panes_when_the_app_is_built(lite0):
    seen = []

    def plugin(app):
        app.compute.add_stage("probe", lambda result, state: "ok")
        app.view.pane_providers["side"] = lambda result, state: np.zeros((10, 10, 3), np.uint8)
        seen.append(app)

    app = LiveApp(open_source("demo", loop=True), lite0, CONFIG, "_blocks.8", LiveOptions(plugins=[plugin]))
    try:
        assert seen == [app] and "side" in app.view.pane_providers
    finally:
        app.source.close()


def test_a_stacked_pane_provider_shows_the_earlier_one_where_it_has_nothing():
    from toolbox.app.view import LiveView

    view = LiveView(CONFIG, ())
    below, above = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)
    view.add_pane_provider("side", lambda result, state: below)
    view.add_pane_provider("side", lambda result, state: above if state.mode == "on" else None)
    side = view.pane_providers["side"]
    assert side(None, AppState(layer=0, mode="on")) is above
    assert side(None, AppState(layer=0)) is below
    assert view.pane_size("side") == (CONFIG.layout.panes["side"].h, CONFIG.layout.panes["side"].w)
    assert view.pane_size("no such pane") is None
