"""Activation mosaics, zoom, filters and layout: each picture checked pixel for pixel."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toolbox.render.colormap import colormap_lut
from toolbox.render.filters import filter_grid
from toolbox.render.layout import Rect, compose
from toolbox.render.mosaic import SEPARATOR, CURSOR, channel_mosaic, mosaic_geometry, normalise_activations
from toolbox.render.panes import channel_zoom


def reference_levels(act: np.ndarray, mode: str) -> np.ndarray:
    """Independent numpy normalisation to uint8 levels."""
    act = act.astype(np.float64)
    if mode == "channel":
        lo = act.min(axis=(1, 2), keepdims=True)
        hi = act.max(axis=(1, 2), keepdims=True)
    else:
        lo, hi = act.min(), act.max()
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    unit = np.where(hi - lo > 0, (act - lo) / span, 0.0)
    return np.round(unit * 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["channel", "layer"])
def test_each_tile_equals_its_normalised_channel(mode):
    torch.manual_seed(0)
    act = torch.randn(10, 7, 5) * torch.arange(1, 11).view(10, 1, 1)  # channels with different ranges
    geometry = mosaic_geometry(10, 7, 5, 200, 300)
    image = channel_mosaic(act, geometry, mode)
    expected = reference_levels(act.numpy(), mode)
    s = geometry.tile_h // 7
    assert geometry.tile_h == 7 * s and geometry.tile_w == 5 * s and s >= 2
    for c in range(10):
        y, x = geometry.tile_origin(c)
        tile = image[y : y + geometry.tile_h, x : x + geometry.tile_w, 0]
        np.testing.assert_array_equal(tile[::s, ::s], expected[c], err_msg=f"channel {c}")
        np.testing.assert_array_equal(tile, np.kron(expected[c], np.ones((s, s), np.uint8)))
        assert (image[y : y + geometry.tile_h, x : x + geometry.tile_w] == tile[..., None]).all()  # grey


def test_constant_channel_is_black_not_nan():
    act = torch.zeros(2, 4, 4)
    act[1] = torch.arange(16.0).view(4, 4)
    unit = normalise_activations(act, "channel")
    assert torch.equal(unit[0], torch.zeros(4, 4)) and unit[1].max() == 1 and unit[1].min() == 0


def test_colormap_maps_levels_through_the_lut():
    act = torch.arange(16.0).view(1, 4, 4)
    geometry = mosaic_geometry(1, 4, 4, 6, 6)
    image = channel_mosaic(act, geometry, "channel", colormap="viridis")
    levels = reference_levels(act.numpy(), "channel")[0]
    y, x = geometry.tile_origin(0)
    np.testing.assert_array_equal(image[y : y + 4, x : x + 4], colormap_lut("viridis")[levels])


@pytest.mark.parametrize("channels, fmap, pane, grid", [
    (1, 112, (640, 640), (1, 1)),
    (3, 56, (640, 640), (2, 2)),
    (64, 56, (640, 640), (8, 8)),
    (1280, 7, (640, 640), (36, 36)),
])
def test_grid_is_near_square_and_fits_the_pane(channels, fmap, pane, grid):
    g = mosaic_geometry(channels, fmap, fmap, *pane)
    assert (g.rows, g.cols) == grid
    assert g.rows * g.cols >= channels > (g.rows - 1) * g.cols
    assert g.height <= pane[0] and g.width <= pane[1]
    image = channel_mosaic(torch.rand(channels, fmap, fmap), g)
    assert image.shape == (g.height, g.width, 3)


def test_1280_channels_stay_legible():
    g = mosaic_geometry(1280, 7, 7, 640, 640)
    assert g.tile_h >= 14, "each 7x7 map should get at least 2x2 pixels per activation"


def test_separators_and_selected_outline():
    g = mosaic_geometry(4, 3, 3, 40, 40)
    image = channel_mosaic(torch.rand(4, 3, 3), g, selected=3)
    assert tuple(image[0, 0]) == SEPARATOR
    y, x = g.tile_origin(3)
    assert tuple(image[y - 1, x]) == CURSOR[0] and tuple(image[y + g.tile_h, x + g.tile_w]) == CURSOR[0]
    y0, x0 = g.tile_origin(0)
    assert tuple(image[y0 - 1, x0]) == SEPARATOR


@pytest.mark.parametrize("colormap", ["none", "viridis", "inferno", "magma", "jet", "turbo"])
def test_the_cursor_stands_out_on_every_colormap(colormap):
    """Whatever colour a tile has in that table, one of the cursor's rings differs from it strongly
    (CIELAB distance), and both rings are drawn around the selected tile."""
    import cv2

    from toolbox.render.colormap import colormap_lut

    g = mosaic_geometry(16, 8, 8, 200, 200)
    image = channel_mosaic(torch.rand(16, 8, 8, generator=torch.Generator().manual_seed(0)), g, "channel", colormap,
                           selected=5)
    y, x = g.tile_origin(5)
    outer = np.concatenate([image[y - 1, x - 1 : x + g.tile_w + 1], image[y : y + g.tile_h, x + g.tile_w]])
    inner = np.concatenate([image[y, x : x + g.tile_w], image[y : y + g.tile_h, x]])
    rings = np.unique(np.concatenate([outer, inner]), axis=0)
    assert len(np.unique(outer, axis=0)) == 1 and len(np.unique(inner, axis=0)) == 1 and len(rings) == 2

    def lab(colours):
        return cv2.cvtColor(np.asarray(colours, np.uint8).reshape(-1, 1, 3), cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(float)

    table, cursor = lab(colormap_lut(colormap)), lab(rings)
    farthest = np.sqrt(((table[:, None] - cursor[None]) ** 2).sum(axis=2)).max(axis=1)
    assert farthest.min() > 100, f"some {colormap} colour hides the cursor"


def test_geometry_maps_pixels_and_moves_back_to_channels():
    g = mosaic_geometry(10, 4, 4, 100, 100)
    for c in range(10):
        y, x = g.tile_origin(c)
        assert g.channel_at(y, x) == c
    assert g.move(0, 0, -1) == 0
    assert g.move(0, 1, 0) == g.cols
    assert g.move(9, 5, 5) == 9  # clamps to the last valid channel


def test_shrunk_tiles_average_areas():
    act = torch.zeros(1, 112, 112)
    act[0, :56] = 1.0
    g = mosaic_geometry(1, 112, 112, 60, 60)
    assert g.tile_h < 112
    image = channel_mosaic(act, g)
    y, x = g.tile_origin(0)
    column = image[y : y + g.tile_h, x + 3, 0]
    assert column[0] == 255 and column[-1] == 0


def test_zoom_shows_the_channel_with_square_pixels():
    unit = torch.tensor([[0.0, 1.0], [0.5, 0.25]])
    pane = channel_zoom(unit, 100, 100)
    assert pane.shape == (100, 100, 3)
    assert pane[0, 0, 0] == 0 and pane[0, 99, 0] == 255 and pane[99, 0, 0] == 128 and pane[99, 99, 0] == 64


def test_first_layer_filters_are_coloured_tiles():
    weight = torch.zeros(2, 3, 3, 3)
    weight[0, 0] = 1.0  # filter 0 responds to red only
    weight[1, 2] = 1.0  # filter 1 to blue only
    image = filter_grid(weight, 60, 120)
    g = mosaic_geometry(2, 3, 3, 60, 120)
    y, x = g.tile_origin(0)
    assert tuple(image[y + 1, x + 1]) == (0, 0, 255)  # red in BGR
    y, x = g.tile_origin(1)
    assert tuple(image[y + 1, x + 1]) == (255, 0, 0)  # blue in BGR


def test_compose_places_each_pane_in_its_rectangle():
    red = np.zeros((10, 20, 3), np.uint8)
    red[:] = (0, 0, 255)
    canvas = compose(50, 30, {"a": Rect(5, 5, 20, 10)}, {"a": red})
    assert (canvas[5:15, 5:25] == (0, 0, 255)).all()
    assert (canvas[:5] != (0, 0, 255)).any(axis=-1).all()
