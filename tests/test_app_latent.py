"""The live latent views without a display: the frame's vector, the neighbours pane (rolling memory and
index), the map pane with its moving point, the concept meter."""
from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
import torch

from toolbox.analysis.latent.concepts import layer_gradient
from toolbox.app.concept_plugin import install_concepts
from toolbox.app.live import LiveApp, LiveOptions
from toolbox.app.map_plugin import install_map
from toolbox.app.neighbours_plugin import install_neighbours
from toolbox.app.threads import Captured
from toolbox.config import load_config
from toolbox.errors import DeepvisError
from toolbox.sources import open_source
from toolbox.sources.frame import Frame

CONFIG = load_config()
PANES = CONFIG.layout.panes


def frames(clip: str, indices) -> list[Frame]:
    with open_source(clip) as source:
        out = []
        for i in indices:
            source.seek(i)
            out.append(source.read())
        return out


def make_app(lite0, **options) -> LiveApp:
    plugins = [install_neighbours, install_map, install_concepts]
    return LiveApp(open_source("demo", loop=True), lite0, CONFIG, "_blocks.8", LiveOptions(plugins=plugins, **options))


def step(app, frame: Frame, **extras):
    state = dataclasses.replace(app.state, extras={**app.state.extras, **extras})
    return app.compute(Captured(frame, time.perf_counter()), state), state


def pane(app, result, state, name: str) -> np.ndarray:
    rect = PANES[name]
    image = app.view.base(result, state)[0]
    return image[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]


@pytest.fixture(scope="module")
def carphone_frames():
    return frames("carphone", range(0, 110, 5))


def test_neighbours_pane_searches_this_session_s_frames_like_brute_force(lite0, carphone_frames):
    app = make_app(lite0)
    try:
        with app.compute:
            results = [step(app, f, latent_neighbours=True) for f in carphone_frames]
        result, state = results[-1]
        vector = result.extras["latent"]
        pooled = result.activations["_relu1"].mean((1, 2)).numpy()
        np.testing.assert_allclose(vector, pooled, rtol=1e-6)
        kept, items = app.latent.memory.snapshot()
        others = [i for i, item in enumerate(items) if item.frame != result.frame_index]
        d = np.linalg.norm(kept[others] - vector, axis=1)
        want = sorted(d)[:6]
        np.testing.assert_allclose([m.distance for m in result.extras["neighbours"]], want, rtol=1e-3, atol=1e-3)
        first = pane(app, results[5][0], results[5][1], "side")
        last = pane(app, result, state, "side")
        assert not np.array_equal(first, last)  # the pane follows the frame
        off = pane(app, result, dataclasses.replace(state, extras={}), "side")
        assert not np.array_equal(off, last)  # off: the side column is back
    finally:
        app.source.close()


def test_neighbours_pane_with_an_index_finds_an_indexed_frame_at_distance_zero(lite0, demo_index):
    app = make_app(lite0, index=str(demo_index.folder))
    try:
        item = demo_index.items[4]
        (frame,) = frames(item["source"], [item["frame"]])
        with app.compute:
            result, _ = step(app, frame, latent_neighbours=True)
        best = result.extras["neighbours"][0]
        assert best.distance < 1e-3 * np.linalg.norm(demo_index.vectors[4])
        assert best.label == demo_index.label(4)
        assert len(app.latent.memory) == 0  # an index replaces the session's memory
    finally:
        app.source.close()


def fake_index(folder, lite0, **changes):
    """An index of one vector whose recipe differs from lite0's as ``changes`` say."""
    from toolbox.jobs.index import recipe_for
    from toolbox.jobs.index_store import IndexStore

    recipe = dataclasses.replace(recipe_for(lite0, "_relu1", "mean"), **changes)
    store = IndexStore(folder)
    store.start(recipe)
    item = {"source": "x", "frame": 0, "time": 0.0, "class": "y", "class_index": 0, "probability": 1.0}
    store.append(np.ones((1, 8), np.float32), np.zeros((1, 64, 64, 3), np.uint8), [item], {})
    return folder


def test_an_index_of_other_weights_or_an_uncaptured_layer_is_refused_naming_both(lite0, tmp_path):
    with pytest.raises(DeepvisError, match=r"weights 0123.*the live window runs model lite0 \(weights 005b"):
        make_app(lite0, index=str(fake_index(tmp_path / "a", lite0, weights_id="0123")))
    with pytest.raises(DeepvisError, match=r"layer _blocks\.3\._bn0, which the live window does not capture"):
        make_app(lite0, index=str(fake_index(tmp_path / "b", lite0, layer="_blocks.3._bn0")))


def test_map_pane_fits_in_the_background_and_the_point_moves_with_the_frame(lite0, carphone_frames):
    app = make_app(lite0)
    try:
        with app.compute:
            for f in carphone_frames[:12]:
                step(app, f, latent_map=True)
            handle = app.tasks.latest("latent_map")
            assert handle is not None
            handle.join(30)
            assert handle.status == "done", handle.error
            a, state = step(app, carphone_frames[0], latent_map=True)
            b, _ = step(app, carphone_frames[-1], latent_map=True)
        fit = app.latent_map.fits["pca"]
        assert fit.count >= 8 and b.extras["map"].fit is fit
        # the point is the PCA transform of the frame's vector, drawn where the atlas puts that position
        expected = fit.frame.to_pixels(fit.fitted.transform(b.extras["latent"][None]))[0]
        trail_a, trail_b = a.extras["map"].trail, b.extras["map"].trail
        assert np.array_equal(trail_b[-1], expected)
        assert np.array_equal(trail_b[-2], trail_a[-1])  # the trail: a's point, then b's
        assert not np.array_equal(trail_a[-1], trail_b[-1])
        assert b.extras["map"].caption[1] == "live point: exact PCA projection; ring: now"
        assert not np.array_equal(pane(app, a, state, "zoom"), pane(app, b, state, "zoom"))
    finally:
        app.tasks.shutdown()
        app.source.close()


def test_map_method_key_cycles_pca_umap_tsne():
    from toolbox.app.map_plugin import METHOD, next_map_method
    from toolbox.app.state import AppState

    seen = []
    state = AppState(layer="_blocks.8")
    for _ in range(4):
        state = next_map_method(state, None)
        seen.append(state.extras[METHOD])
    assert seen == ["umap", "tsne", "pca", "umap"]


def test_umap_map_is_fitted_in_the_background_pca_meanwhile_then_the_frame_is_placed_by_its_neighbours(
        lite0, carphone_frames, monkeypatch):
    import threading

    from toolbox.analysis.latent.maps import fit_map
    from toolbox.app import map_plugin

    release = threading.Event()

    def held_fit(*args, **kwargs):  # the fit waits for the test: what the pane shows meanwhile is checked
        release.wait(30)
        return fit_map(*args, **kwargs)

    monkeypatch.setattr(map_plugin, "fit_map", held_fit)
    app = make_app(lite0)
    app.latent_map.epochs = 30  # a small map: the layout converges in a few epochs
    try:
        with app.compute:
            for f in carphone_frames[:12]:
                step(app, f, latent_map=True)
            release.set()
            app.tasks.latest("latent_map").join(30)
            release.clear()
            pca, state = step(app, carphone_frames[1], latent_map=True, latent_map_method="umap")
            fitting = app.tasks.latest("latent_map_nonlinear")
            assert fitting.running and pca.extras["map"].fit is app.latent_map.fits["pca"]
            assert pca.extras["map"].caption[1].startswith("fitting UMAP ")
            # Esc cancels the fit: PCA stays, the caption says so, and the fit is not started again
            assert app.tasks.cancel() >= 1
            release.set()
            fitting.join(60)
            assert fitting.status == "cancelled"
            cancelled, _ = step(app, carphone_frames[2], latent_map=True, latent_map_method="umap")
            assert cancelled.extras["map"].caption[1] == "UMAP fit cancelled (Esc)"
            assert app.tasks.latest("latent_map_nonlinear") is fitting and "umap" not in app.latent_map.fits
            # cycling the method back to UMAP asks again
            step(app, carphone_frames[2], latent_map=True, latent_map_method="pca")
            step(app, carphone_frames[2], latent_map=True, latent_map_method="umap")
            handle = app.tasks.latest("latent_map_nonlinear")
            assert handle is not fitting
            handle.join(120)
            assert handle.status == "done", handle.error
            a, state = step(app, carphone_frames[0], latent_map=True, latent_map_method="umap")
            b, _ = step(app, carphone_frames[-1], latent_map=True, latent_map_method="umap")
        fit = app.latent_map.fits["umap"]
        assert a.extras["map"].fit is fit and fit.fitted.method == "umap"
        assert a.extras["map"].caption[1].endswith("live point: 8-NN placement")
        # the live point: the weighted mean of its 8 nearest fitted frames' UMAP positions, in atlas pixels
        for result in (a, b):
            expected = fit.frame.to_pixels(fit.placement.place(result.extras["latent"]))[0]
            assert np.array_equal(result.extras["map"].trail[-1], expected)
        assert len(b.extras["map"].trail) == 2  # the trail restarted on the new map
        assert not np.array_equal(a.extras["map"].trail[-1], b.extras["map"].trail[-1])
        # a remembered frame (the first one seen) lands on its own UMAP position
        own = np.flatnonzero(np.all(fit.placement.vectors == a.extras["latent"], axis=1))
        assert len(own) == 1
        assert np.array_equal(a.extras["map"].trail[-1], fit.frame.to_pixels(fit.fitted.coords[own])[0])
        assert not np.array_equal(pane(app, a, state, "zoom"), pane(app, pca, state, "zoom"))
    finally:
        release.set()
        app.tasks.shutdown()
        app.source.close()


def write_cavs(folder, model, vectors: dict[str, np.ndarray], layer: str = "_blocks.12"):
    folder.mkdir()
    np.savez(folder / "cavs.npz", **{f"{name}|{layer}": v for name, v in vectors.items()})
    (folder / "cavs.json").write_text(json.dumps({"model": model.name, "weights_id": model.weights_id,
                                                  "layers": [layer], "concepts": list(vectors)}))


def test_concept_meter_shows_the_cosine_and_the_sign_of_the_top_class_derivative(lite0, tmp_path, carphone_frames):
    shape = lite0.layer_infos(["_blocks.12"])[0].shape
    rng = np.random.default_rng(0)
    cavs = {name: (v / np.linalg.norm(v)).astype(np.float32)
            for name, v in (("up", rng.normal(size=int(np.prod(shape)))), ("down", rng.normal(size=int(np.prod(shape)))))}
    write_cavs(tmp_path / "cav", lite0, cavs)
    app = make_app(lite0, cav=str(tmp_path / "cav"))
    try:
        with app.compute:
            result, state = step(app, carphone_frames[3])
            app.tasks.latest("concept_meter").join(30)
        act = result.activations["_blocks.12"].flatten().numpy()
        rows = {concept: cos for concept, _, cos in result.extras["concepts"]}
        for name, cav in cavs.items():
            assert rows[name] == pytest.approx(float(act @ cav / np.linalg.norm(act)), rel=1e-5)
        top = result.predictions[0].index
        _, grad = layer_gradient(lite0.module, lite0.input_tensor(result.view), "_blocks.12", top)
        for name, cav in cavs.items():
            assert app.concept_meter.signs[(name, "_blocks.12")] == np.sign(float(grad[0].numpy() @ cav))
        shown = pane(app, result, state, "predictions")
        assert shown.shape == (PANES["predictions"].h, PANES["predictions"].w, 3)
        plain = pane(make_app(lite0), result, state, "predictions")
        assert not np.array_equal(shown, plain)
    finally:
        app.tasks.shutdown()
        app.source.close()


def test_cavs_of_another_model_are_refused_naming_both(lite0, tmp_path):
    other = dataclasses.replace(lite0, name="resnet18", weights_id="abc")
    write_cavs(tmp_path / "cav", other, {"x": np.ones(10, np.float32)})
    with pytest.raises(DeepvisError, match="model resnet18 .*abc.*runs lite0"):
        make_app(lite0, cav=str(tmp_path / "cav"))


def test_a_large_index_gets_a_t_sne_map_of_a_seeded_sample_and_the_caption_says_so(lite0, demo_index, monkeypatch):
    from toolbox.app import map_plugin

    monkeypatch.setattr(map_plugin, "NONLINEAR_LIMIT", 12)
    app = make_app(lite0, index=str(demo_index.folder))
    app.latent_map.epochs = 50
    item = demo_index.items[4]
    (frame,) = frames(item["source"], [item["frame"]])
    try:
        with app.compute:
            step(app, frame, latent_map=True, latent_map_method="tsne")
            handle = app.tasks.latest("latent_map_nonlinear")
            handle.join(60)
            assert handle.status == "done", handle.error
            result, _ = step(app, frame, latent_map=True, latent_map_method="tsne")
        fit = app.latent_map.fits["tsne"]
        assert (fit.count, fit.total) == (12, len(demo_index)) and len(fit.placement.vectors) == 12
        title, line = result.extras["map"].caption
        assert title.startswith(f"t-SNE map of 12 of {len(demo_index)} frames at ")
        assert line.startswith("fitted ") and line.endswith("live point: 8-NN placement")
        # the sample: the seeded draw of 12 of the indexed frames
        again = np.sort(np.random.default_rng(map_plugin.SEED).choice(len(demo_index), 12, replace=False))
        np.testing.assert_array_equal(fit.placement.vectors, demo_index.vectors[again])
    finally:
        app.tasks.shutdown()
        app.source.close()
