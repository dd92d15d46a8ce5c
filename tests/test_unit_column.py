"""The side pane: synthetic image above a 3x3 montage of top patches."""
from __future__ import annotations

import numpy as np

from toolbox.render.unit_column import EMPTY, STALE, patch_montage, unit_column


def test_montage_places_patches_best_first_row_by_row():
    patches = [np.full((4, 4, 3), 10 * (n + 1), np.uint8) for n in range(5)]
    grid = patch_montage(patches, tile=8, sep=1)
    assert grid.shape == (3 * 8 + 4, 3 * 8 + 4, 3)
    assert grid[1 + 4, 1 + 4].tolist() == [10, 10, 10]  # cell (0, 0)
    assert grid[1 + 4, 1 + 9 + 4].tolist() == [20, 20, 20]  # cell (0, 1)
    assert grid[1 + 9 + 4, 1 + 9 + 4].tolist() == [50, 50, 50]  # cell (1, 1)
    assert grid[1 + 18 + 4, 1 + 18 + 4].tolist() == list(EMPTY)  # no 9th patch


def test_montage_keeps_the_aspect_of_border_clipped_crops():
    grid = patch_montage([np.full((2, 4, 3), 200, np.uint8)], tile=8, sep=0, rows=1, cols=1)
    assert (grid[:, :, 0] == 200).sum() == 4 * 8  # 2x4 crop -> 4x8, centred


def test_column_shows_the_image_or_a_stale_box_and_fits_the_pane():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:] = (0, 0, 255)
    pane = unit_column(image, [np.zeros((5, 5, 3), np.uint8)] * 9, 300, 200, title="_blocks.3 ch 7")
    assert pane.shape == (300, 200, 3) and pane.dtype == np.uint8
    assert ((pane == (0, 0, 255)).all(axis=-1)).sum() > 100 * 100
    pending = unit_column(None, [], 300, 200, pending=True)
    assert ((pending == STALE).all(axis=-1)).sum() > 100 * 100
