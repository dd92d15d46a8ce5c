"""Saliency in the live window without a display: the keys' reducers, the one-pass compute step,
back diffs, the frozen target, background maps with their age, and the ONNX backends."""
from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from toolbox.analysis.saliency import saliency_pass
from toolbox.app.keys import load_key_table
from toolbox.app.live import LiveApp, LiveOptions
from toolbox.app.saliency_plugin import BACK_DIFFS, EXPENSIVE, LIVE_METHODS, PLACEMENT, TARGET, TASK, install_saliency
from toolbox.app.state import AppState, LayerShape, LiveContext, reduce
from toolbox.app.threads import Captured
from toolbox.cli import _config, build_parser
from toolbox.config import load_config
from toolbox.models import load_model
from toolbox.render.mosaic import back_diffs_mosaic, mosaic_geometry
from toolbox.sources import open_source
from toolbox.sources.frame import Frame

CONFIG = load_config()
LAYER = "_blocks.8"  # 112 x 14 x 14
CONTEXT = LiveContext((LayerShape("a", 16, 8, 8), LayerShape("b", 32, 4, 4)), (640, 640))


def captured(image: np.ndarray) -> Captured:
    return Captured(Frame(image, 7, 0.0), time.perf_counter())


def step(state: AppState, action: str) -> AppState:
    return reduce(state, action, CONTEXT).state


# --- keys -------------------------------------------------------------------------------------------

def test_method_key_cycles_off_then_every_live_method_then_off():
    state, seen = AppState(layer=0), []
    for _ in range(len(LIVE_METHODS) + 1):
        state = step(state, "saliency_method")
        seen.append(state.overlay)
    assert seen[:5] == ["gradient", "guided", "deconvnet", "gradcam", "guided_gradcam"]
    assert {"smoothgrad", "integrated_gradients", "occlusion", "rise"} <= set(seen) and seen[-1] == "none"


def test_target_key_freezes_the_cursor_unit_then_takes_the_top1_class_then_follows_the_cursor():
    state = AppState(layer=0, channel=5)
    frozen = step(state, "saliency_target")
    assert frozen.extras[TARGET] == ("unit", "a", 5)
    moved = step(step(frozen, "channel_right"), "channel_right")
    assert moved.channel == 7 and moved.extras[TARGET] == ("unit", "a", 5)  # the cursor moved, the target did not
    assert step(moved, "saliency_target").extras[TARGET] == ("class",)
    assert step(step(moved, "saliency_target"), "saliency_target").extras[TARGET] is None


def test_placement_and_back_diffs_keys_toggle_and_every_key_is_bound_once():
    state = AppState(layer=0)
    assert step(state, "saliency_placement").extras[PLACEMENT] == "side"
    assert step(step(state, "saliency_placement"), "saliency_placement").extras[PLACEMENT] == "overlay"
    assert step(state, "saliency_back_diffs").extras[BACK_DIFFS] is True
    table = load_key_table(CONFIG.live.keys)  # refuses a key bound twice
    for key, action in (("g", "saliency_method"), ("b", "saliency_target"), ("o", "saliency_placement"),
                        ("a", "saliency_back_diffs")):
        assert table.action_for(ord(key)) == action


# --- the compute step ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app(lite0):
    live = LiveApp(open_source("demo", loop=True), lite0, CONFIG, LAYER, LiveOptions(plugins=[install_saliency]))
    with live.compute:
        yield live
    live.tasks.shutdown()
    live.source.close()


def with_(app, **changes) -> AppState:
    extras = changes.pop("extras", {})
    return dataclasses.replace(app.state, **changes, extras={**app.state.extras, **extras})


def test_gradient_step_shares_one_forward_gives_plain_activations_and_a_heatmap_over_the_input(app, cat_bgr):
    plain = app.compute(captured(cat_bgr), app.state)
    state = with_(app, overlay="gradient")
    result = app.compute(captured(cat_bgr), state)
    assert type(plain.forward_output).__name__ == "FrameResult"  # plain frames: the analyser's forward
    assert set(result.activations) == set(plain.activations)
    for name, act in plain.activations.items():
        torch.testing.assert_close(result.activations[name], act, rtol=1e-4, atol=1e-5)
    assert [p.index for p in result.predictions] == [p.index for p in plain.predictions]
    saliency = result.extras["saliency"]
    assert saliency.method == "gradient" and saliency.map.shape == (3, 224, 224) and saliency.map.abs().sum() > 0
    rect = app.view.panes["input"]
    shown = result.base[rect.y:rect.y + rect.h, rect.x:rect.x + rect.w]
    bare = plain.base[rect.y:rect.y + rect.h, rect.x:rect.x + rect.w]
    assert app.view.input_held(state) and not app.view.input_held(app.state)
    change = np.abs(shown.astype(int) - bare.astype(int)).max(axis=2)
    assert (change > 40).mean() > 0.005  # the heatmap is drawn over the frame's salient pixels
    assert np.median(change) < 10  # and leaves the rest of it readable (no wash)
    flag = app.saliency.status_flag(state)
    assert flag.startswith(f"gradient of unit {LAYER}:0 (cursor)")
    assert "torch CPU" in app.compute.provider_label


def test_side_placement_draws_the_map_in_the_side_pane_and_leaves_the_input_live(app, cat_bgr):
    state = with_(app, overlay="gradcam", extras={PLACEMENT: "side"})
    result = app.compute(captured(cat_bgr), state)
    assert not app.view.input_held(state)
    side = app.saliency.side_pane(result, state)
    rect = app.view.panes["side"]
    assert side.shape == (rect.h, rect.w, 3) and side.std() > 20
    assert result.extras["saliency"].map.shape == (14, 14)  # Grad-CAM at the selected layer


def test_back_diffs_mosaic_renders_the_layer_gradient_of_the_same_pass(app, lite0, cat_bgr):
    state = with_(app, extras={BACK_DIFFS: True, TARGET: ("class",)})
    result = app.compute(captured(cat_bgr), state)
    gradient = result.extras["saliency"].layer_gradient
    reference = saliency_pass(lite0, lite0.input_tensor(result.view), "gradient", None, layer=LAYER)
    torch.testing.assert_close(gradient, reference.layer_gradient, rtol=1e-4, atol=1e-7)
    pane = app.saliency.mosaic_pane(result, state)
    h, w = app.saliency.mosaic_size
    geometry = mosaic_geometry(112, 14, 14, h, w)
    expected = back_diffs_mosaic(gradient, geometry, "channel", "none", 0)
    y0, x0 = (h - expected.shape[0]) // 2, (w - expected.shape[1]) // 2
    assert np.array_equal(pane[y0:y0 + expected.shape[0], x0:x0 + expected.shape[1]], expected)
    rect = app.view.panes["mosaic"]
    shown = result.base[rect.y:rect.y + rect.h, rect.x:rect.x + rect.w]
    assert np.array_equal(shown, pane)  # the window shows it in place of the activations
    assert "back diffs" in app.saliency.status_flag(state)


def test_back_diffs_draw_zero_as_mid_grey_and_the_sign_as_brightness():
    gradient = torch.zeros(2, 2, 2)
    gradient[1, 0, 0], gradient[1, 1, 1] = 2.0, -1.0
    image = back_diffs_mosaic(gradient, mosaic_geometry(2, 2, 2, 8, 8))
    g = mosaic_geometry(2, 2, 2, 8, 8)
    y, x = g.tile_origin(0)
    assert (image[y:y + g.tile_h, x:x + g.tile_w] == 128).all()
    y, x = g.tile_origin(1)
    tile = image[y:y + g.tile_h, x:x + g.tile_w, 0]
    assert tile[0, 0] == 255 and tile[-1, -1] == 64 and tile[0, -1] == 128


def test_a_frozen_target_stays_while_the_cursor_moves(app, cat_bgr):
    frozen = with_(app, overlay="guided", channel=3, extras={TARGET: ("unit", LAYER, 3)})
    moved = dataclasses.replace(frozen, channel=40)
    at_3 = app.compute(captured(cat_bgr), with_(app, overlay="guided", channel=3)).extras["saliency"]
    at_40 = app.compute(captured(cat_bgr), with_(app, overlay="guided", channel=40)).extras["saliency"]
    kept = app.compute(captured(cat_bgr), moved).extras["saliency"]
    torch.testing.assert_close(kept.map, at_3.map)
    assert not torch.allclose(at_40.map, at_3.map)
    assert kept.target == f"unit {LAYER}:3 (frozen)" and "(frozen)" in app.saliency.status_flag(moved)


def test_an_expensive_method_runs_in_the_background_and_reports_its_age(app, cat_bgr):
    assert {"smoothgrad", "occlusion"} <= EXPENSIVE
    app.compute(captured(cat_bgr), with_(app, overlay="integrated_gradients", extras={TARGET: ("class",)}))
    superseded = app.tasks.latest(TASK)
    state = with_(app, overlay="occlusion", extras={TARGET: ("class",)})
    frame = captured(cat_bgr)
    result = app.compute(frame, state)
    superseded.join(30)
    assert superseded.status == "cancelled"  # a newer choice stops the older map
    assert type(result.forward_output).__name__ == "FrameResult"  # the frame itself: a plain forward
    handle = app.tasks.latest(TASK)
    assert handle is not None and handle.label == "occlusion"
    assert "computing" in app.saliency.status_flag(state)
    handle.join(60)
    assert handle.status == "done", handle.error
    saliency = app.saliency.current(result, state)
    assert saliency.method == "occlusion" and saliency.map.shape == (224, 224)
    time.sleep(0.15)
    assert re_age(app.saliency.status_flag(state)) >= 0.1
    assert "s old" in app.saliency.caption(saliency)
    assert app.view.input_held(state) and app.saliency.input_pane(result, state) is not None
    again = app.compute(frame, state)  # the same frame again (a frozen input): no new map is started
    assert app.tasks.latest(TASK) is handle and app.saliency.current(again, state) is saliency
    time.sleep(app.saliency.config.refresh_s)
    app.compute(captured(cat_bgr), state)  # a new frame after refresh_s: the next map starts...
    following = app.tasks.latest(TASK)
    assert following is not handle and following.running
    assert app.saliency.current(None, state) is saliency  # ...and the newest map stays up meanwhile
    app.tasks.cancel(TASK)
    following.join(30)
    assert following.status == "cancelled" and app.saliency.current(None, state) is saliency
    app.compute(captured(cat_bgr), state)  # after Esc, new frames start no map until the choice changes
    assert app.tasks.latest(TASK) is following


def test_rise_reports_real_progress_and_turning_the_overlay_off_abandons_it(app, cat_bgr):
    state = with_(app, overlay="rise", extras={TARGET: ("class",)})
    app.compute(captured(cat_bgr), state)
    handle = app.tasks.latest(TASK)
    assert handle.label == "RISE"
    assert len(progress_seen(handle, 60)) >= 2, "RISE's bar never moved between 0 and 100 %"  # one per batch
    app.compute(captured(cat_bgr), with_(app, overlay="none"))  # the overlay is switched off
    assert handle.abandoned or not handle.running  # its bar is gone at once
    handle.join(30)
    assert handle.status in ("cancelled", "done")
    app.compute(captured(cat_bgr), state)  # choosing RISE again starts a fresh map
    fresh = app.tasks.latest(TASK)
    assert fresh is not handle and fresh.running
    app.tasks.cancel(TASK)
    fresh.join(30)


def test_scorecam_reports_progress_per_batch_and_stops_on_esc(app, cat_bgr):
    """Score-CAM's masked forwards run on an inference copy without the task model's cancel hook:
    its progress callback reports each batch and is where Esc takes effect."""
    state = with_(app, overlay="scorecam", extras={TARGET: ("class",)})
    app.compute(captured(cat_bgr), state)
    handle = app.tasks.latest(TASK)
    assert handle.label == "Score-CAM"
    assert len(progress_seen(handle, 90)) >= 2, "Score-CAM's bar never moved between 0 and 100 %"
    app.tasks.cancel(TASK)
    handle.join(15)
    assert handle.status == "cancelled" and not handle.running


def progress_seen(handle, timeout: float) -> set[float]:
    """The distinct fractions strictly between 0 and 1 a running task shows, polled until two
    were seen, the task ends or ``timeout`` seconds pass."""
    seen: set[float] = set()
    deadline = time.monotonic() + timeout
    while handle.running and time.monotonic() < deadline and len(seen) < 2:
        if 0 < handle.progress < 1:
            seen.add(round(handle.progress, 3))
        time.sleep(0.01)
    return seen


def re_age(text: str) -> float:
    import re

    match = re.search(r"map (\d+\.\d) s old", text)
    assert match, text
    return float(match.group(1))


# --- ONNX --------------------------------------------------------------------------------------------

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    path = folder / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tiny().eval(), (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False,
                          input_names=["image"], output_names=["scores"], dynamic_axes={"image": {0: "batch"}})
    labels = folder / "labels.txt"
    labels.write_text("".join(f"thing{i}\n" for i in range(10)))
    return path, labels


def test_live_parser_takes_the_backend_options(tiny_onnx):
    path, labels = tiny_onnx
    args = build_parser().parse_args(["live", "demo", "--model", str(path), "--labels", str(labels),
                                      "--backend", "onnx"])
    config = _config(args)
    assert (config.model.backend, config.model.name, config.model.labels) == ("onnx", str(path), str(labels))


def test_an_onnx_graph_runs_live_with_gradient_methods_unavailable_and_occlusion_in_the_background(tiny_onnx, cat_bgr):
    path, labels = tiny_onnx
    config = load_config(overrides={"model.name": str(path), "model.labels": str(labels), "model.device": "cpu",
                                    "model.backend": "onnx"})
    model = load_model(str(path), labels=str(labels))
    live = LiveApp(open_source("demo", loop=True), model, config, model.layers[-1],
                   LiveOptions(plugins=[install_saliency]))
    try:
        with live.compute:
            assert live.compute.provider_label == "onnx CPU"
            state = dataclasses.replace(live.state, overlay="gradient")
            result = live.compute(captured(cat_bgr), state)
            assert set(result.activations) == set(model.layers) and result.predictions[0].label.startswith("thing")
            assert result.extras["saliency"] is None and not live.view.input_held(state)
            flag = live.saliency.status_flag(state)
            assert flag == f"gradient unavailable: {live.compute.analyser.gradients_unavailable}"
            occluded = dataclasses.replace(live.state, overlay="occlusion")
            live.compute(captured(cat_bgr), occluded)
            handle = live.tasks.latest(TASK)
            handle.join(30)
            assert handle.status == "done", handle.error
            assert live.saliency.current(None, occluded).map.shape == (32, 32)
            flag = live.saliency.status_flag(occluded)
            assert re_age(flag) >= 0 and "top-1 class [thing" in flag
            text = live.view.status_text("demo", f"tiny ({live.compute.provider_label})", occluded, result,
                                         (0, 0, 0), [])
            assert "onnx CPU" in text and "occlusion [slow: background] of top-1 class" in text
    finally:
        live.tasks.shutdown()
        live.source.close()


def test_backend_onnx_on_a_torch_model_runs_gradient_frames_through_torch(lite0, cat_bgr, tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPVIS_CACHE", str(tmp_path))
    model = load_model("resnet18", weights="none", device="cpu")
    config = load_config(overrides={"model.backend": "onnx", "model.device": "cpu"})
    live = LiveApp(open_source("demo", loop=True), model, config, "layer2", LiveOptions(plugins=[install_saliency]))
    try:
        with live.compute:
            assert live.compute.provider_label == "onnx CPU"
            plain = live.compute(captured(cat_bgr), live.state)
            state = dataclasses.replace(live.state, overlay="gradcam")
            result = live.compute(captured(cat_bgr), state)
            assert result.extras["saliency"].map.dim() == 2
            torch.testing.assert_close(result.activations["layer2"], plain.activations["layer2"], rtol=1e-3, atol=1e-3)
            assert "(gradients via torch)" in live.saliency.status_flag(state)
    finally:
        live.source.close()


# --- the g cycle's marks and K's deletion AUC ------------------------------------------------------

def test_every_registered_method_is_in_the_cycle_and_expensive_ones_are_announced_as_such():
    from toolbox.analysis.saliency import METHODS
    from toolbox.app.saliency_plugin import EXPENSIVE_MARK

    assert set(METHODS) <= set(LIVE_METHODS)
    state, messages = AppState(layer=0), {}
    for _ in range(len(LIVE_METHODS)):
        transition = reduce(state, "saliency_method", CONTEXT)
        state = transition.state
        messages[state.overlay] = transition.effects[0].text
    assert all((EXPENSIVE_MARK in messages[m]) == (m in EXPENSIVE) for m in LIVE_METHODS)
    assert "scorecam" in EXPENSIVE and "lrp_epsilon" not in EXPENSIVE and "eigencam" not in EXPENSIVE


def test_k_scores_the_map_on_screen_in_the_background(lite0, cat_bgr):
    from toolbox.analysis.saliency.metrics import faithfulness
    from toolbox.analysis.saliency.targets import ClassTarget
    from toolbox.app.faithfulness_plugin import REQUEST, STEPS, install_faithfulness

    live = LiveApp(open_source("demo", loop=True), lite0, CONFIG, LAYER,
                   LiveOptions(plugins=[install_saliency, install_faithfulness]))
    try:
        with live.compute:
            state = dataclasses.replace(live.state, overlay="gradcam", extras={**live.state.extras, TARGET: ("class",)})
            result = live.compute(captured(cat_bgr), state)
            shown = result.extras["saliency"]
            pressed = reduce(state, "saliency_faithfulness", CONTEXT).state
            assert pressed.extras[REQUEST] == 1 and live.compute.key(pressed) != live.compute.key(state)
            live.compute(captured(cat_bgr), pressed)
            handle = live.tasks.latest("faithfulness")
            handle.join(60)
            assert handle.status == "done", handle.error
            x = lite0.input_tensor(shown.view)
            expected = faithfulness(lite0.module, x, shown.map, ClassTarget(int(lite0.module(x).argmax())),
                                    ("deletion",), steps=STEPS).values["deletion"]
            assert handle.result.value == pytest.approx(expected, abs=1e-5)
            flag = live.view.status_text("demo", "lite0", pressed, result, (0, 0, 0), [])
            assert f"deletion AUC {expected:.3f} of Grad-CAM" in flag
    finally:
        live.tasks.shutdown()
        live.source.close()
