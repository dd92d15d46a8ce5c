"""Analytic receptive fields against a gradient-based measurement, and against hand-computed values."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from toolbox.models.receptive_field import measured_receptive_field, receptive_field


@pytest.mark.parametrize("layer", ["_relu0", "_blocks.1", "_blocks.3", "_blocks.5"])
def test_lite0_analytic_field_matches_gradient_measurement(lite0, layer):
    analytic = receptive_field(lite0, layer, size=96)
    measured = measured_receptive_field(lite0, layer, size=96)
    assert analytic == measured


def test_lite0_fields_by_hand(lite0):
    # stem 3x3/2 pad 1; block 0: dw 3x3; block 1: dw 3x3 stride 2 (jump 2 -> 4).
    assert receptive_field(lite0, "_relu0").size == (3, 3)
    f = receptive_field(lite0, "_blocks.1")
    assert (f.size, f.stride, f.offset) == ((11, 11), (4, 4), (-5, -5))


def test_residual_branches_take_the_union_and_pooling_composes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(3, 4, (1, 5), padding=(0, 2))  # asymmetric kernel, parallel branch
            self.pool = nn.MaxPool2d(2)
            self.out = nn.Conv2d(4, 4, 3, stride=2)

        def forward(self, x):
            return self.out(self.pool(torch.relu(self.a(x)) + self.b(x)))

    from toolbox.models.preprocess import IMAGENET
    from toolbox.models.registry import LoadedModel

    net = Net().eval().requires_grad_(False)
    model = LoadedModel("toy", net, IMAGENET, (), ["out"], "random", "toy")
    f = receptive_field(model, "out", size=32)
    # union of 3x3 and 1x5: rows 3 (offset -1), cols 5 (offset -2); pool 2/2: +1 jump 2; conv 3/2: +2*2, jump 4.
    assert f.size == (3 + 1 + 4, 5 + 1 + 4) and f.stride == (4, 4) and f.offset == (-1, -2)
    assert f == measured_receptive_field(model, "out", size=32)
