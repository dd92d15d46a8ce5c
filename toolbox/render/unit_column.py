"""The per-unit column beside the mosaic: the unit's synthetic image above its top-9 patches."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from toolbox.render.panes import blank_pane, fit_image
from toolbox.render.text import fit_text, put_text

STALE = (40, 70, 80)  # BGR: being computed (drawn instead of waiting)
EMPTY = (45, 45, 45)  # BGR: nothing to show yet
SEP = (90, 90, 90)
CAPTION_H = 18


def patch_montage(patches: Sequence[np.ndarray], tile: int, rows: int = 3, cols: int = 3, sep: int = 1) -> np.ndarray:
    """Up to rows*cols crops (h, w, 3) uint8 BGR, best first, row by row -> one grid image
    (rows*tile + (rows+1)*sep, cols*tile + (cols+1)*sep, 3); each crop is fitted into its
    tile keeping its aspect (crops clipped at the frame border are not square); empty cells grey."""
    grid = blank_pane(rows * tile + (rows + 1) * sep, cols * tile + (cols + 1) * sep, SEP)
    for n in range(rows * cols):
        r, c = divmod(n, cols)
        y, x = sep + r * (tile + sep), sep + c * (tile + sep)
        if n < len(patches) and patches[n].size:
            grid[y : y + tile, x : x + tile] = fit_image(patches[n], tile, tile, background=EMPTY)
        else:
            grid[y : y + tile, x : x + tile] = EMPTY
    return grid


def unit_column(synthetic: np.ndarray | None, patches: Sequence[np.ndarray], height: int, width: int,
                title: str = "", pending: bool = False) -> np.ndarray:
    """The side pane (height, width, 3) uint8 BGR.

    synthetic: the unit's optimised image (S, S, 3) uint8 BGR, or None (then a stale-coloured box
    saying "computing..." when ``pending``, else an empty box). patches: its top crops, best first.
    """
    pane = blank_pane(height, width)
    put_text(pane, fit_text(title or "unit", width - 8, 0.42), (4, CAPTION_H - 5), 0.42)
    side = max(1, min(width, (height - 2 * CAPTION_H) // 2))
    y = CAPTION_H
    x = (width - side) // 2
    if synthetic is not None:
        pane[y : y + side, x : x + side] = fit_image(synthetic, side, side, interpolation=cv2.INTER_LINEAR)
    else:
        pane[y : y + side, x : x + side] = STALE if pending else EMPTY
        put_text(pane, "computing..." if pending else "no image yet", (x + 6, y + side // 2), 0.42)
    y += side
    put_text(pane, fit_text(f"top {len(patches)} patches", width - 8, 0.42), (4, y + CAPTION_H - 5), 0.42)
    y += CAPTION_H
    room = min(width, height - y)
    if room >= 8:
        tile = (room - 4) // 3
        montage = patch_montage(patches, tile)
        mh, mw = montage.shape[:2]
        mx = (width - mw) // 2
        pane[y : y + mh, mx : mx + mw] = montage
    return pane
