"""DeepDream core: the properties the reference algorithms and the tiled CUDA core must keep."""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings as hsettings, strategies as st

from toolbox.analysis.dream import DreamEngine, LayerTerm, dream, preset
from toolbox.analysis.dream.core import bgr_to_rgb01
from toolbox.analysis.optimise.octaves import detail_sizes, resize_sizes
from toolbox.analysis.optimise.tiling import TileGrid, roll, unroll
from toolbox.errors import DeepvisError

# _blocks.3 of lite0: stride 8, theoretical receptive field 35 px (stem 3, +2*2, +2*2 at stride 2,
# +2*4, +4*4 at the stride-8 5x5 depthwise), so a 40 px halo covers it.
SHALLOW = "_blocks.3"
SHALLOW_RF = 35


@pytest.fixture(scope="module")
def small_cat(cat_bgr):
    return cv2.resize(cat_bgr, (160, 104), interpolation=cv2.INTER_AREA)


@given(h=st.integers(1, 12), w=st.integers(1, 12), dy=st.integers(-50, 50), dx=st.integers(-50, 50))
@hsettings(max_examples=50, deadline=None)
def test_roll_then_unroll_is_identity(h, w, dy, dx):
    image = torch.arange(3 * h * w, dtype=torch.float32).reshape(1, 3, h, w)
    assert torch.equal(unroll(roll(image, (dy, dx)), (dy, dx)), image)


@pytest.mark.parametrize("size", [(160, 200), (150, 190)])
def test_tiled_gradient_equals_untiled_with_full_halo(lite0, size):
    # The tiled path treats the image as a torus (wrap halos) while the untiled network zero-pads,
    # so they agree exactly wherever the borders are out of reach: a halo from every edge.
    torch.manual_seed(0)
    image = torch.rand(1, 3, *size)
    base = preset("classic").with_layers([SHALLOW])
    with DreamEngine(lite0, base) as untiled, DreamEngine(lite0, base.replace(tile=40, halo=40)) as tiled:
        assert tiled.halo >= SHALLOW_RF
        with torch.enable_grad():
            g_untiled, _ = untiled.gradient(image)
            g_tiled, _ = tiled.gradient(image)
    h = tiled.halo
    inner = (slice(None), slice(None), slice(h, size[0] - h), slice(h, size[1] - h))
    scale = g_untiled[inner].abs().max()
    assert scale > 0
    torch.testing.assert_close(g_tiled[inner], g_untiled[inner], atol=1e-5 * float(scale), rtol=1e-4)


def test_tiled_gradient_reaches_every_pixel(lite0):
    # Unlike the TF tutorial's skip-last-tile rule, every pixel gets a gradient at every step,
    # also when the last tile overhangs the image.
    torch.manual_seed(1)
    image = torch.rand(1, 3, 150, 190)
    with DreamEngine(lite0, preset("classic").with_layers([SHALLOW]).replace(tile=64, halo=16)) as engine:
        with torch.enable_grad():
            grad, _ = engine.gradient(image)
    assert bool((grad.abs().sum(dim=1) > 0).all())


@pytest.mark.parametrize("norm", ["mean-abs", "std"])
def test_update_is_invariant_to_scaling_the_loss(lite0, small_cat, norm):
    rgb = bgr_to_rgb01(small_cat)
    base = preset("classic").replace(norm=norm)
    outputs = []
    for weight in (1.0, 1000.0):
        with DreamEngine(lite0, base.with_layers([LayerTerm("_blocks.8", weight, "l2")])) as engine:
            with torch.enable_grad():
                out, _ = engine.step(rgb, torch.Generator().manual_seed(3))
        outputs.append(out)
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-6, rtol=0)
    assert not torch.equal(outputs[0], rgb)


def test_objective_increases_over_steps_on_lite0(lite0, small_cat):
    settings = preset("classic").with_layers(["_blocks.8"]).replace(octaves=1, steps=8, jitter=0)
    result = dream(small_cat, lite0, settings)
    values = result.objectives
    assert len(values) == 8
    rises = sum(b > a for a, b in zip(values, values[1:]))
    # Gradient ascent with small normalised steps: nearly every step raises the objective, and
    # eight 1.5-grey-level steps raise it by a clear margin (measured: about +50 %).
    assert rises >= 6
    assert values[-1] > 1.2 * values[0]


def test_octave_families_produce_documented_pyramids():
    # Reference §2.5 / §3.3 / §8.6 at a 640x480 base.
    assert detail_sizes(480, 640, 4, 1.4) == [(175, 233), (245, 326), (343, 457), (480, 640)]
    assert resize_sizes(480, 640, -2, 2, 1.3) == [(284, 378), (369, 492), (480, 640), (624, 832), (811, 1081)]


@pytest.mark.parametrize("name,expected", [
    ("classic", [(38, 51), (53, 71), (74, 100)]),
    ("tf-tutorial", [(59, 79), (76, 103), (100, 134)]),  # int() truncates, as TF casts
])
def test_dream_runs_its_octaves_at_those_sizes(lite0, name, expected):
    image = np.full((74, 100, 3), 128, np.uint8) if name == "classic" else np.full((100, 134, 3), 128, np.uint8)
    settings = preset(name).with_layers(["_blocks.3"]).replace(octaves=3, steps=1)
    seen = []
    with DreamEngine(lite0, settings) as engine:
        original = engine.gradient
        engine.gradient = lambda x: (seen.append(tuple(x.shape[-2:])), original(x))[1]
        result = dream(image, lite0, settings, engine=engine)
    assert seen == expected
    assert result.image.shape == image.shape


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_within_one_step(lite0, small_cat, kind):
    event = threading.Event()
    cancel = event if kind == "event" else event.is_set

    def progress(p):
        if p.done == 3:
            event.set()

    settings = preset("classic").with_layers(["_blocks.3"]).replace(octaves=2, steps=5)
    result = dream(small_cat, lite0, settings, progress=progress, cancel=cancel)
    assert result.cancelled
    assert result.steps_done == 3
    assert result.image.shape == small_cat.shape


def test_progress_reports_every_octave_and_step(lite0, small_cat):
    reports = []
    dream(small_cat, lite0, preset("classic").with_layers(["_blocks.3"]).replace(octaves=2, steps=3),
          progress=reports.append)
    assert [(p.octave, p.step) for p in reports] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    assert reports[-1].fraction == 1.0


def test_out_of_memory_halves_tile_batch_and_continues(lite0, small_cat):
    settings = preset("classic").with_layers([SHALLOW]).replace(octaves=1, steps=2, tile=32, halo=16)
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    batches = []
    with DreamEngine(lite0, settings) as engine:
        real = engine.batch_gradient

        def limited(tiles, masks, counts):
            if tiles.shape[0] > 3:  # a device that fits at most 3 tiles at once
                raise oom("simulated: CUDA out of memory")
            batches.append(tiles.shape[0])
            return real(tiles, masks, counts)

        engine.batch_gradient = limited
        result = dream(small_cat, lite0, settings, engine=engine)
        assert engine.tile_batch is not None and engine.tile_batch <= 3
        assert result.fallbacks[0].startswith("tile batch")
    assert result.steps_done == 2 and not result.cancelled
    assert max(batches) <= 3
    # Batching only changes how the sum is grouped: same dream as a run that starts small.
    reference = dream(small_cat, lite0, settings.replace(tile_batch=engine.tile_batch))
    assert np.abs(result.image.astype(int) - reference.image.astype(int)).max() <= 1


def test_out_of_memory_untiled_switches_to_tiles_and_gives_up_cleanly(lite0, small_cat):
    settings = preset("classic").with_layers([SHALLOW]).replace(octaves=1, steps=1)
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    with DreamEngine(lite0, settings) as engine:
        real = engine.batch_gradient
        engine.batch_gradient = lambda t, m, c: (_ for _ in ()).throw(oom("sim")) if m is None else real(t, m, c)
        result = dream(small_cat, lite0, settings, engine=engine)
        assert result.fallbacks[0].startswith("untiled -> tile")
        assert result.steps_done == 1
    with DreamEngine(lite0, settings) as engine:
        engine.batch_gradient = lambda t, m, c: (_ for _ in ()).throw(oom("sim"))
        with pytest.raises(DeepvisError, match="out of GPU memory"):
            dream(small_cat, lite0, settings, engine=engine)


def test_same_seed_same_output(lite0, small_cat):
    settings = preset("classic").with_layers(["_blocks.5"]).replace(octaves=2, steps=2, seed=7)
    a = dream(small_cat, lite0, settings).image
    b = dream(small_cat, lite0, settings).image
    c = dream(small_cat, lite0, settings.replace(seed=8)).image
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_tile_grid_masks_own_each_activation_once():
    grid = TileGrid(150, 190, tile=64, halo=16)
    for stride in (8, 16):
        mask = grid.interior_mask(stride)
        assert mask.sum() == -(-150 // stride) * -(-190 // stride)


def test_other_objectives_run_and_rise(lite0, small_cat):
    guide = cv2.resize(small_cat[:, ::-1], (80, 52))
    base = preset("classic").replace(octaves=1, steps=3, jitter=0)
    for terms, extra in [
        ([LayerTerm("_blocks.5", 1.0, "channel", 5)], {}),
        ([LayerTerm("_blocks.3", 1.0, "mean"), LayerTerm("_blocks.5", 2.0, "l2")], {}),
        ([LayerTerm("_blocks.5", 1.0, "guide")], {"guide": guide}),
        ([LayerTerm("logits", 1.0, "logit", 281)], {}),
    ]:
        result = dream(small_cat, lite0, base.replace(**extra).with_layers(terms))
        assert result.objectives[-1] > result.objectives[0], terms


def test_bad_settings_are_user_errors(lite0):
    with pytest.raises(DeepvisError, match="preset"):
        preset("nope")
    with pytest.raises(DeepvisError, match="scale"):
        preset("classic").replace(scale=0.5)
    with pytest.raises(DeepvisError, match="layer"):
        DreamEngine(lite0, preset("classic"))
    with pytest.raises(DeepvisError, match="unknown layer"):
        DreamEngine(lite0, preset("classic").with_layers(["_blocks.99"]))


def test_cuts_agree_and_leave_no_hooks(lite0):
    # The folded Sequential prefix (lite0) and the hook-and-stop cut (any model) are the same
    # function; after close() the shared model carries no hooks.
    from toolbox.models.capture import has_hooks

    torch.manual_seed(2)
    image = torch.rand(1, 3, 64, 96)
    settings = preset("classic").with_layers(["_blocks.5"])
    grads = {}
    for cut in ("sequential", "hooks"):
        with DreamEngine(lite0, settings, cut=cut) as engine:
            with torch.enable_grad():
                grads[cut], _ = engine.gradient(image)
    assert not has_hooks(lite0.module)
    scale = float(grads["hooks"].abs().max())
    torch.testing.assert_close(grads["sequential"], grads["hooks"], atol=1e-4 * scale, rtol=1e-3)


def test_hook_cut_ignores_other_threads_forwards(lite0):
    # The live app runs its own forward passes on the same module while a dream is set up.
    image = torch.rand(1, 3, 64, 64)
    with DreamEngine(lite0, preset("classic").with_layers(["_blocks.2"]), cut="hooks"):
        with torch.inference_mode():
            logits = lite0.module(lite0.preprocess.normalise(image))
    assert logits.shape == (1, 1000)


def test_dream_forward_does_not_fire_others_hooks_on_the_model(lite0):
    # The live app captures activations with hooks on the same blocks while a dream runs.
    fired = []
    handle = lite0.module.get_submodule("_blocks.3").register_forward_hook(lambda *a: fired.append(1))
    try:
        with DreamEngine(lite0, preset("classic").with_layers(["_blocks.5"])) as engine:
            with torch.enable_grad():
                engine.gradient(torch.rand(1, 3, 64, 64))
    finally:
        handle.remove()
    assert not fired
