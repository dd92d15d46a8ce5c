"""Filter pictures for deeper layers: one tile per input channel of the selected filter."""
from __future__ import annotations

import torch

from toolbox.render.filters import filters_view, input_channel_grid, layer_conv_weight


def test_input_channel_grid_shows_each_kernel_min_max_normalised():
    w = torch.zeros(2, 4, 2, 2)
    w[1, 0] = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # filter 1, input channel 0
    w[1, 3] = -1.0
    grid = input_channel_grid(w, 1, 40, 40)
    # 4 tiles in a 2x2 grid of 2x2 kernels magnified; first tile top-left pixel = 0 -> level of -1..3 range
    assert grid.shape[2] == 3 and (grid[..., 0] == grid[..., 1]).all()
    tile = grid[1:, 1:]
    scale = (grid.shape[0] - 3) // 4
    assert tile[0, 0, 0] == round(255 * 1 / 4)  # value 0 in range [-1, 3]
    assert tile[scale, scale, 0] == 255  # value 3 is the filter's maximum


def test_global_mode_compares_filters_on_one_scale():
    w = torch.zeros(2, 1, 1, 1)
    w[0, 0, 0, 0], w[1, 0, 0, 0] = 1.0, 2.0
    assert input_channel_grid(w, 0, 8, 8, mode="global")[4, 4, 0] == 0  # 1 is the layer's minimum
    assert input_channel_grid(w, 1, 8, 8, mode="global")[4, 4, 0] == 255
    assert input_channel_grid(w, 0, 8, 8, mode="filter")[4, 4, 0] == 128  # a constant filter -> 0.5


def test_layer_conv_weight_and_view_pick_the_right_convolution(lite0):
    assert layer_conv_weight(lite0.module, "_blocks.3").shape == (40, 144, 1, 1)  # project conv
    assert layer_conv_weight(lite0.module, "_relu0").shape == (32, 3, 3, 3)  # stem conv, before the ReLU
    rgb = filters_view(layer_conv_weight(lite0.module, "_relu0"), 0, 100, 100)
    deep = filters_view(layer_conv_weight(lite0.module, "_blocks.3"), 5, 100, 100)
    assert rgb.shape[2] == deep.shape[2] == 3 and rgb.dtype == deep.dtype
