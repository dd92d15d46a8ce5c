"""The heatmap post-processing chain, and the jobs that write saliency maps (inspect, analyze)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from toolbox.analysis.rise import rise_saliency
from toolbox.analysis.saliency import METHODS, saliency_map
from toolbox.render.colormap import colormap_lut
from toolbox.render.heatmap import (HeatmapStyle, clip_signed, clip_to_unit, gaussian_blur, gradient_picture,
                                    heatmap_levels, method_style, render_heatmap, signed_part)
from toolbox.render.mosaic import to_levels


def test_sign_choices_and_channel_reduction():
    m = torch.tensor([[[1.0, -3.0]], [[-2.0, 0.5]], [[0.0, 0.0]]])  # (3, 1, 2)
    torch.testing.assert_close(signed_part(m, "abs"), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(signed_part(m, "positive"), torch.tensor([[1.0, 0.5]]))
    torch.testing.assert_close(signed_part(m, "negative"), torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(signed_part(m[0], "positive"), torch.tensor([[1.0, 0.0]]))


def test_percentile_clip_keeps_one_hot_pixel_from_blacking_out_the_rest():
    m = torch.ones(40, 40)  # one hot pixel in 1600
    m[0, 0] = 1000.0
    unit = clip_to_unit(m, 99.0)
    assert float(unit.min()) == 1.0  # the ordinary pixels reach full scale
    assert float(clip_to_unit(m, 100.0)[5, 5]) == pytest.approx(0.001)
    assert torch.count_nonzero(clip_to_unit(torch.zeros(4, 4))) == 0


def test_gaussian_blur_preserves_constant_maps_and_spreads_a_point():
    torch.testing.assert_close(gaussian_blur(torch.full((9, 9), 0.25), 1.5), torch.full((9, 9), 0.25))
    point = torch.zeros(15, 15)
    point[7, 7] = 1.0
    blurred = gaussian_blur(point, 1.0)
    assert float(blurred.sum()) == pytest.approx(1.0, rel=1e-5) and float(blurred[7, 7]) < 0.2


def test_overlay_opacity_follows_the_map_and_the_side_pane_is_the_map_over_black():
    view = np.full((32, 32, 3), 100, np.uint8)
    cam = torch.zeros(4, 4)
    cam[1, 1] = 1.0
    style = HeatmapStyle(clip_percentile=100.0, colormap="jet", alpha=0.8)
    levels = heatmap_levels(cam, 32, style)
    assert levels.shape == (32, 32) and 0.8 < float(levels.max()) <= 1.0  # bilinear peak between samples
    colours = colormap_lut("jet")[to_levels(levels).numpy()].astype(np.float32)
    a = 0.8 * levels.numpy()[..., None]
    expected = np.round((1 - a) * view + a * colours).astype(np.uint8)
    np.testing.assert_array_equal(render_heatmap(cam, view, style), expected)
    np.testing.assert_array_equal(render_heatmap(cam, view, style.with_(placement="side")),
                                  np.round(a * colours).astype(np.uint8))
    np.testing.assert_array_equal(render_heatmap(cam, view, style.with_(alpha=0.0)), view)
    picture = gradient_picture(torch.randn(3, 16, 16), size=32)
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8


def test_where_the_map_is_zero_the_input_shows_untouched():
    """No wash: a map that is zero except in one corner leaves the rest of the picture as it was."""
    view = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    saliency = torch.zeros(3, 64, 64)
    saliency[:, :8, :8] = torch.randn(3, 8, 8)
    for style in (HeatmapStyle(), method_style("gradient"), method_style("integrated_gradients")):
        image = render_heatmap(saliency, view, style)
        np.testing.assert_array_equal(image[16:, 16:], view[16:, 16:])
        assert np.abs(image[:8, :8].astype(int) - view[:8, :8]).mean() > 10  # the salient corner is tinted


def test_the_default_colormap_is_perceptual_and_signed_maps_diverge_around_zero():
    lut = colormap_lut(HeatmapStyle().colormap)
    lightness = cv2.cvtColor(lut[None], cv2.COLOR_BGR2LAB)[0, :, 0].astype(int)
    assert (np.diff(lightness) >= -1).all() and lightness[-1] - lightness[0] > 200  # dark to bright, monotonic
    style = method_style("integrated_gradients")
    assert style.sign == "signed" and method_style("gradient").sign == "abs"
    view = np.full((2, 2, 3), 128, np.uint8)
    image = render_heatmap(torch.tensor([[1.0, -1.0], [0.0, 0.0]]), view, style.with_(clip_percentile=100.0)).astype(int)
    (b_pos, _, r_pos), (b_neg, _, r_neg) = image[0, 0], image[0, 1]
    assert r_pos > b_pos + 40 and b_neg > r_neg + 40  # positive red, negative blue
    np.testing.assert_array_equal(image[1], view[1])  # zero: transparent


def test_percentile_clip_and_floor():
    m = torch.arange(100.0).view(10, 10)
    unit = clip_to_unit(m, 90.0, floor_percentile=50.0)
    assert float(unit[0, 0]) == 0.0 and float(unit[4, 9]) == 0.0  # below the median: transparent
    assert float(unit[9, 9]) == 1.0 and 0.4 < float(unit[7, 0]) < 0.6
    torch.testing.assert_close(clip_signed(torch.tensor([2.0, -4.0, 0.0]), 100.0), torch.tensor([0.5, -1.0, 0.0]))
    assert torch.count_nonzero(clip_to_unit(torch.full((3, 3), 0.4), 99.0, floor_percentile=50.0)) == 0


def test_rise_peaks_on_the_object_of_its_class(lite0, cat_bgr, coffee_bgr):
    """A cat beside an espresso: RISE for the cat class peaks on the cat half, for espresso on the cup;
    drawn with its floor, the other half stays almost untouched."""
    view = np.full((224, 224, 3), 128, np.uint8)
    view[37:187, :112] = cv2.resize(cat_bgr, (224, 150))[:, 56:168]
    view[37:187, 112:] = cv2.resize(coffee_bgr, (224, 150))[:, 56:168]
    x = lite0.input_tensor(view)
    espresso, cat = lite0.categories.index("espresso"), int(lite0.module(x).argmax())
    assert "cat" in lite0.categories[cat]
    for target, half in ((cat, slice(0, 112)), (espresso, slice(112, 224))):
        other = slice(112, 224) if half.start == 0 else slice(0, 112)
        saliency = rise_saliency(lite0.module, x, target, count=96, batch_size=32)
        assert float(saliency[:, half].mean()) > float(saliency[:, other].mean())
        assert half.start <= int(saliency.argmax()) % 224 < half.stop
        image = render_heatmap(saliency, view, method_style("rise"))
        change = np.abs(image.astype(int) - view).mean(axis=2)
        assert change[:, half].mean() > 2 * change[:, other].mean()


def test_deconvnet_on_lite0_keeps_its_own_pattern_where_guided_backprop_follows_the_image(lite0, cat_bgr):
    """Why inspect's deconvnet map of the cat shows stripes: without max-pooling switches the rule keeps
    almost nothing of the image (see deconvnet_map). Mirroring the cat leaves deconvnet's map in place,
    while guided backprop's map moves with the cat."""
    x = lite0.input_tensor(lite0.preprocess.model_view(cat_bgr))

    def correlation(a, b):
        a, b = a.flatten() - a.mean(), b.flatten() - b.mean()
        return float(a @ b / (a.norm() * b.norm()))

    for method, stays in (("deconvnet", True), ("guided", False)):
        plain = saliency_map(lite0, x, method, 285).abs().amax(0)
        mirrored = saliency_map(lite0, x.flip(3), method, 285).abs().amax(0)
        in_place, moved = correlation(plain, mirrored), correlation(plain, mirrored.flip(1))
        assert (in_place > 0.5 and moved < 0.2) if stays else (moved > in_place + 0.1), (method, in_place, moved)


def test_write_saliency_maps_writes_every_method(random_model, tmp_path):
    from toolbox.jobs.saliency_maps import write_saliency_maps

    model = random_model("resnet18")
    view = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    written = write_saliency_maps(model, view, tmp_path)
    index = json.loads((tmp_path / "saliency.json").read_text())
    assert set(index["maps"]) == set(METHODS)
    for method in METHODS:
        path = written[f"saliency/{method}"]
        assert path.is_file() and path.stat().st_size > 0
    assert index["gradcam_layer"] == model.layers[-1]


def test_analyze_renders_chosen_saliency_method_and_rejects_unknown(tmp_path, capsys):
    from toolbox.cli import main

    assert main(["analyze", "demo", "--out", str(tmp_path / "a"), "--max-frames", "2", "--quiet",
                 "--model", "resnet18", "--weights", "none", "--saliency", "gradcam"]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["frames_processed"] == 2 and (tmp_path / "a" / "annotated.mp4").stat().st_size > 0
    assert main(["analyze", "demo", "--out", str(tmp_path / "b"), "--saliency", "nope", "--quiet"]) == 2
    assert "unknown saliency method 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "b" / "summary.json").exists()


def test_saliency_map_rejects_bad_targets_with_user_errors(random_model):
    from toolbox.errors import DeepvisError

    model = random_model("resnet18")
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(DeepvisError, match="out of range"):
        saliency_map(model, x, "gradient", 5000)
    with pytest.raises(DeepvisError, match="unknown class name"):
        saliency_map(model, x, "gradient", "not a class")
    assert saliency_map(model, x, "gradient", "tabby").shape == (3, 32, 32)
    with pytest.raises(DeepvisError, match="pick a layer before the unit"):
        saliency_map(model, x, "gradcam", ("layer1.0", 0), layer="layer4.1")
