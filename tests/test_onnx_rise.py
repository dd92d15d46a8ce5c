"""RISE: random masks, batched, against any batch-forward callable."""
from __future__ import annotations

import pytest
import torch

from toolbox.analysis.rise import rise_masks, rise_saliency


def test_masks_are_smooth_unit_range_and_keep_about_p_of_the_image():
    masks = rise_masks(400, 32, cells=4, p=0.3, seed=1)
    assert masks.shape == (400, 1, 32, 32) and masks.dtype == torch.float32
    assert 0.0 <= float(masks.min()) and float(masks.max()) <= 1.0
    assert float(masks.mean()) == pytest.approx(0.3, abs=0.03)
    assert len(masks.unique()) > 2  # bilinear upsampling, not hard cell edges


def test_masks_are_the_same_for_the_same_seed_and_differ_for_another():
    assert torch.equal(rise_masks(8, 20, seed=3), rise_masks(8, 20, seed=3))
    assert not torch.equal(rise_masks(8, 20, seed=3), rise_masks(8, 20, seed=4))


def test_rise_equals_the_probability_weighted_mask_sum_computed_by_hand():
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, :, :2] = 1.0  # top half visible
    masks[1, :, :, :2] = 1.0  # left half visible

    def forward(x):  # two classes; class 0 logit = sum of the input
        return torch.stack([x.sum(dim=(1, 2, 3)), torch.zeros(len(x))], dim=1)

    x = torch.full((1, 3, 4, 4), 0.1)
    saliency = rise_saliency(forward, x, target=0, masks=masks, p=0.5)
    p_top = torch.sigmoid(torch.tensor(0.1 * 3 * 8))  # softmax of (s, 0) for class 0 = sigmoid(s)
    expected = (p_top * masks[0, 0] + p_top * masks[1, 0]) / (2 * 0.5)
    torch.testing.assert_close(saliency, expected)


def test_rise_lights_up_the_region_the_model_looks_at():
    def forward(x):  # the class-0 score rises with how much of the top-left quadrant is visible
        seen = (x[:, :, :16, :16].mean(dim=(1, 2, 3)) - 0.5) * 8
        return torch.stack([seen, torch.zeros(len(x))], dim=1)

    saliency = rise_saliency(forward, torch.ones(1, 3, 32, 32), target=0, count=300, cells=4, seed=0)
    inside = saliency[:16, :16].mean()
    outside = torch.cat([saliency[16:].flatten(), saliency[:16, 16:].flatten()]).mean()
    assert inside > outside + 0.08


def test_rise_does_not_depend_on_the_batch_size():
    weights = torch.randn(3, 10)

    def forward(x):
        return x.mean(dim=(2, 3)) @ weights

    x = torch.randn(1, 3, 24, 24)
    whole = rise_saliency(forward, x, target=None, count=50, batch_size=64)
    pieces = rise_saliency(forward, x, target=None, count=50, batch_size=7)
    torch.testing.assert_close(whole, pieces)
