"""The inversion and style loss terms equal independent written-out formulas (numpy, loops)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toolbox.analysis.objectives import inversion as inv
from toolbox.analysis.objectives import style as sty


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 3, 7, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_gram_is_features_times_transpose_over_c_h_w():
    act = torch.randn(1, 4, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f = act[0].numpy()
    c, h, w = f.shape
    expected = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            expected[i, j] = sum(f[i, y, x] * f[j, y, x] for y in range(h) for x in range(w)) / (c * h * w)
    np.testing.assert_allclose(sty.gram(act)[0].numpy(), expected, rtol=1e-12)


def test_gram_of_a_tiled_texture_does_not_depend_on_its_size():
    act = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    np.testing.assert_allclose(sty.gram(act.repeat(1, 1, 3, 2)).numpy(), sty.gram(act).numpy(), rtol=1e-12)


def test_style_loss_is_weighted_sum_of_relative_squared_frobenius_distances():
    g = torch.Generator().manual_seed(2)
    acts = {"a": torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64),
            "b": torch.randn(1, 5, 2, 3, generator=g, dtype=torch.float64)}
    targets = {"a": torch.rand(1, 3, 3, generator=g, dtype=torch.float64),
               "b": torch.rand(1, 5, 5, generator=g, dtype=torch.float64)}
    weights = {"a": 0.3, "b": 2.0}
    expected = 0.0
    for name, w in weights.items():
        gm, t = sty.gram(acts[name])[0].numpy(), targets[name][0].numpy()
        expected += w * ((gm - t) ** 2).sum() / (t ** 2).sum()
    assert float(sty.style_loss(acts, targets, weights)) == pytest.approx(expected, rel=1e-12)
    # default weights: the mean over layers
    default = sum(((sty.gram(acts[n])[0].numpy() - targets[n][0].numpy()) ** 2).sum() / (targets[n][0].numpy() ** 2).sum()
                  for n in acts) / 2
    assert float(sty.style_loss(acts, targets)) == pytest.approx(default, rel=1e-12)


def test_feature_distance_is_relative_squared_error():
    a, b = torch.randn(2, 1, 6, 3, 3, dtype=torch.float64)
    expected = ((a.numpy() - b.numpy()) ** 2).sum() / (b.numpy() ** 2).sum()
    assert float(inv.feature_distance(a, b)) == pytest.approx(expected, rel=1e-12)
    assert float(inv.feature_distance(b, b)) == 0.0


@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_total_variation_beta_matches_the_written_out_sum(image, beta):
    x = image[0].numpy()
    c, h, w = x.shape
    expected = 0.0
    for k in range(c):
        for u in range(h - 1):
            for v in range(w - 1):
                dx = x[k, u, v + 1] - x[k, u, v]
                dy = x[k, u + 1, v] - x[k, u, v]
                expected += (dx * dx + dy * dy) ** (beta / 2)
    assert float(inv.total_variation(image, beta)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("alpha", [2.0, 6.0])
def test_alpha_norm_is_sum_of_abs_to_the_alpha(image, alpha):
    x = image.numpy() - 0.5
    expected = sum(abs(v) ** alpha for v in x.ravel())
    assert float(inv.alpha_norm(torch.from_numpy(x), alpha)) == pytest.approx(expected, rel=1e-10)


def test_normalised_regularisers_use_the_paper_constants(image):
    h, w = image.shape[-2:]
    mean = np.array(inv.IMAGENET_MEAN_RGB).reshape(1, 3, 1, 1)
    x = 255.0 * (image.numpy() - mean)
    expected_alpha = (np.abs(x) ** 6).sum() / (h * w * 80.0 ** 6)
    assert float(inv.normalised_alpha_norm(image)) == pytest.approx(expected_alpha, rel=1e-10)
    y = 255.0 * image.numpy()[0]
    tv = (((y[:, :-1, 1:] - y[:, :-1, :-1]) ** 2) + ((y[:, 1:, :-1] - y[:, :-1, :-1]) ** 2)).sum()
    assert float(inv.normalised_total_variation(image)) == pytest.approx(tv / (h * w * (80.0 / 6.5) ** 2), rel=1e-10)


def test_inversion_objective_is_minus_the_sum_of_its_terms(image):
    target = torch.rand(1, 4, 2, 2, dtype=torch.float64)
    act = torch.rand(1, 4, 2, 2, dtype=torch.float64)
    objective = inv.InversionObjective("l", target, tv_lambda=5.0, alpha_lambda=0.5)
    expected = (inv.feature_distance(act, target) + 0.5 * inv.normalised_alpha_norm(image)
                + 5.0 * inv.normalised_total_variation(image))
    assert float(objective({"l": act}, image)) == pytest.approx(-float(expected), rel=1e-12)


def test_tv_lambda_grows_with_depth_as_the_papers_schedule():
    assert [inv.tv_lambda_for_depth(d) for d in (0.1, 0.5, 0.9)] == list(inv.TV_LAMBDAS)
