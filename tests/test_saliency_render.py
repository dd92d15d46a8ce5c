"""The heatmap post-processing chain, and the jobs that write saliency maps (inspect, analyze)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolbox.analysis.saliency import METHODS, saliency_map
from toolbox.render.colormap import colormap_lut
from toolbox.render.heatmap import (HeatmapStyle, clip_to_unit, gaussian_blur, gradient_picture, heatmap_levels,
                                    render_heatmap, signed_part)


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


def test_overlay_blends_colormap_over_view_and_side_pane_is_colormap_alone():
    view = np.full((32, 32, 3), 100, np.uint8)
    cam = torch.zeros(4, 4)
    cam[1, 1] = 1.0
    side = render_heatmap(cam, view, HeatmapStyle(placement="side", colormap="jet"))
    lut = colormap_lut("jet")
    assert side.shape == (32, 32, 3) and (side[0, 31] == lut[0]).all()  # far from the hot cell: level 0
    np.testing.assert_array_equal(render_heatmap(cam, view, HeatmapStyle(alpha=0.0)), view)
    half = render_heatmap(cam, view, HeatmapStyle(alpha=0.5))
    np.testing.assert_array_equal(half, np.round(0.5 * view + 0.5 * side.astype(np.float32)).astype(np.uint8))
    levels = heatmap_levels(cam, 32, HeatmapStyle(clip_percentile=100.0))
    assert levels.shape == (32, 32) and 0.8 < float(levels.max()) <= 1.0  # bilinear peak between samples
    picture = gradient_picture(torch.randn(3, 16, 16), size=32)
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8


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
