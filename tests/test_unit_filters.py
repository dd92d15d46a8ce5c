"""Filter pictures for deeper layers: one tile per input channel of the selected filter."""
from __future__ import annotations

import numpy as np
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


def test_a_1x1_filter_shows_its_input_channel_weights_by_sign_and_size():
    """A 1x1 kernel is one number per input channel: the tiles are coloured by that number around
    zero (red positive, blue negative, grey zero), not C flat squares of meaningless grey."""
    from toolbox.render.mosaic import mosaic_geometry

    w = torch.zeros(3, 4, 1, 1)
    w[2, :, 0, 0] = torch.tensor([2.0, -2.0, 0.0, 1.0])
    grid = filters_view(w, 2, 80, 80).astype(int)
    g = mosaic_geometry(4, 1, 1, 80, 80)
    centre = [grid[y + g.tile_h // 2, x + g.tile_w // 2] for y, x in (g.tile_origin(c) for c in range(4))]
    (b0, _, r0), (b1, _, r1), (b2, g2, r2), (b3, _, r3) = centre
    assert r0 > b0 + 100 and b1 > r1 + 100  # the strongest weights: saturated red / blue
    assert abs(b2 - r2) < 10 and abs(g2 - r2) < 10  # zero: grey
    assert r3 > b3 and (r0 - b0) > (r3 - b3)  # half the weight, a paler red
    assert not (filters_view(w, 2, 80, 80) == filters_view(w, 0, 80, 80)).all()  # the cursor's filter


def test_the_first_layer_filter_grid_outlines_the_selected_filter():
    from toolbox.render.mosaic import CURSOR, mosaic_geometry

    w = torch.rand(6, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    grid = filters_view(w, 4, 120, 120)
    g = mosaic_geometry(6, 3, 3, 120, 120)
    y, x = g.tile_origin(4)
    assert tuple(grid[y - 1, x]) == CURSOR[0] and tuple(grid[y + g.tile_h, x + g.tile_w]) == CURSOR[0]
    y, x = g.tile_origin(1)
    assert tuple(grid[y - 1, x]) != CURSOR[0]


def test_filters_pane_names_a_single_filter_and_says_when_no_convolution_precedes():
    from toolbox.render.filters import filters_pane
    from toolbox.render.panes import PANE_BACKGROUND, fit_image

    rgb, deep = torch.randn(8, 3, 3, 3), torch.randn(6, 4, 3, 3)
    assert np.array_equal(filters_pane(rgb, 2, "conv1", 90, 120),  # all filters: no caption
                          fit_image(filters_view(rgb, 2, 90, 120), 90, 120, enlarge=False))
    plain = fit_image(filters_view(deep, 9, 90, 120), 90, 120, enlarge=False)
    captioned = filters_pane(deep, 9, "conv2", 90, 120)  # channel past the end: the last filter
    differs = np.nonzero((captioned != plain).any(axis=(1, 2)))[0]
    assert differs.min() >= 90 - 20 and len(differs) > 3  # one line of text along the bottom edge
    empty = filters_pane(None, 0, "relu", 90, 120)
    assert (empty[40:] == PANE_BACKGROUND).all() and (empty[:40] != PANE_BACKGROUND).any()
