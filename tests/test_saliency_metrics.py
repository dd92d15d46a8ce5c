"""Faithfulness metrics on fixed maps against their references: deletion and insertion against
RISE's CausalMetric written out as its authors' loop, ROAD and Average Drop / Increase in
Confidence against pytorch-grad-cam's metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toolbox.analysis.saliency.metrics import (METRICS, auc, blur_substrate, faithfulness, linear_impute, ranking,
                                               relevance_map, scaled_to_unit)
from toolbox.analysis.saliency.targets import ClassTarget

gc_metrics = pytest.importorskip("pytorch_grad_cam.metrics.road")
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence  # noqa: E402
from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,  # noqa: E402
                                                              RemoveLeastRelevantFirst, RemoveMostRelevantFirst)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget  # noqa: E402

SIZE = 96
EGYPTIAN_CAT = 285


@pytest.fixture(scope="module")
def cat(lite0, cat_bgr):
    import cv2

    view = cv2.resize(lite0.preprocess.model_view(cat_bgr), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return lite0.input_tensor(view)


@pytest.fixture(scope="module")
def fixed_map():
    """A smooth blob plus seeded noise, (H, W) in [0, 1], no ties."""
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    blob = torch.exp(-((yy - 40.0) ** 2 + (xx - 55.0) ** 2) / (2 * 18.0 ** 2))
    m = blob + 0.05 * torch.rand(SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    return (m - m.min()) / (m.max() - m.min())


def rise_causal_metric(model, image, explanation, mode, step, substrate):
    """RISE's evaluation.CausalMetric.single_run (Petsiuk et al. 2018), as its authors wrote it:
    one image per forward, pixels moved ``step`` at a time in np.argsort order reversed."""
    hw = image.shape[-1] * image.shape[-2]
    with torch.no_grad():
        c = int(model(image).argmax())
    n_steps = (hw + step - 1) // step
    start, finish = (image.clone(), substrate(image)) if mode == "del" else (substrate(image), image.clone())
    scores = np.empty(n_steps + 1)
    order = np.flip(np.argsort(explanation.reshape(-1, hw), axis=1), axis=-1)
    for i in range(n_steps + 1):
        with torch.no_grad():
            scores[i] = float(model(start).softmax(1)[0, c])
        if i < n_steps:
            coords = order[:, step * i : step * (i + 1)]
            start_np = start.numpy().reshape(1, 3, hw)
            start_np[0, :, coords] = finish.numpy().reshape(1, 3, hw)[0, :, coords]
            start = torch.from_numpy(start_np.reshape(image.shape))
    return (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)


def test_deletion_and_insertion_equal_rises_causal_metric(lite0, cat, fixed_map):
    model = lite0.module
    steps = 24
    step = -(-SIZE * SIZE // steps)
    result = faithfulness(model, cat, fixed_map, ClassTarget(EGYPTIAN_CAT), ("deletion", "insertion"), steps=steps)
    assert int(model(cat).argmax()) == EGYPTIAN_CAT
    deletion = rise_causal_metric(model, cat, fixed_map.numpy(), "del", step, torch.zeros_like)
    insertion = rise_causal_metric(model, cat, fixed_map.numpy(), "ins", step, blur_substrate)
    assert result.values["deletion"] == pytest.approx(deletion, abs=1e-5)
    assert result.values["insertion"] == pytest.approx(insertion, abs=1e-5)
    assert len(result.deletion_curve) == steps + 1 and result.deletion_curve[-1] < result.deletion_curve[0]


def test_auc_is_the_trapezoid_over_unit_interval():
    assert auc(torch.tensor([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert auc(torch.tensor([1.0, 1.0, 1.0, 1.0])) == pytest.approx(1.0)


def test_road_equals_pytorch_grad_cams_without_noise(lite0, cat, fixed_map):
    model = lite0.module
    percentiles = (20, 50, 80)
    ours = faithfulness(model, cat, fixed_map, ClassTarget(EGYPTIAN_CAT), ("road",),
                        road_percentiles=percentiles, road_noise=0.0).values["road"]
    imputer = gc_metrics.NoisyLinearImputer(noise=0.0)
    targets = [ClassifierOutputSoftmaxTarget(EGYPTIAN_CAT)]
    cams = fixed_map[None].numpy()
    morf = np.mean([PerturbationConfidenceMetric(RemoveMostRelevantFirst(p, imputer))(cat, cams, targets, model)
                    for p in percentiles])
    lerf = np.mean([PerturbationConfidenceMetric(RemoveLeastRelevantFirst(p, imputer))(cat, cams, targets, model)
                    for p in percentiles])
    assert ours == pytest.approx(float(lerf - morf) / 2, abs=1e-6)


def test_linear_imputation_fills_with_the_neighbour_mean():
    image = torch.arange(25.0).reshape(1, 5, 5)  # a linear ramp is its own neighbour mean inside
    keep = torch.ones(5, 5, dtype=torch.bool)
    keep[1:4, 1:4] = False
    torch.testing.assert_close(linear_impute(image, keep), image)


def test_average_drop_and_increase_equal_pytorch_grad_cams(lite0, cat, fixed_map):
    model = lite0.module
    ours = faithfulness(model, cat, fixed_map, ClassTarget(EGYPTIAN_CAT), ("average_drop", "increase_in_confidence"))
    targets = [ClassifierOutputSoftmaxTarget(EGYPTIAN_CAT)]
    cams = scaled_to_unit(fixed_map)[None].numpy()
    with torch.no_grad():
        before = float(model(cat).softmax(1)[0, EGYPTIAN_CAT])
    drop = float(DropInConfidence()(cat, cams, targets, model)[0])
    increase = float(IncreaseInConfidence()(cat, cams, targets, model)[0])
    assert ours.values["average_drop"] == pytest.approx(100 * drop / before, rel=1e-5)  # batched vs single forward
    assert ours.values["increase_in_confidence"] == 100 * increase


def test_relevance_of_pixel_and_layer_maps():
    pixel = torch.zeros(3, 4, 4)
    pixel[1, 2, 3] = -5.0
    assert relevance_map(pixel, (4, 4))[2, 3] == 5.0
    assert relevance_map(torch.ones(2, 2), (8, 8)).shape == (8, 8)


def test_ranking_orders_by_mean_rank_with_direction():
    table = {"a": {m: 1.0 for m in METRICS}, "b": {m: 2.0 for m in METRICS}}
    # b is better on insertion, road, increase (higher); a on deletion and drop (lower): 3 of 5 for b
    assert [name for name, _ in ranking(table)] == ["b", "a"]
