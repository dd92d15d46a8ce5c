"""A query picture beside its nearest neighbours, each captioned (distance, source, time)."""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from toolbox.render.panes import blank_pane, fit_image
from toolbox.render.text import fit_text, put_text

QUERY_COLOUR = (60, 200, 255)  # BGR amber frame around the query
NEIGHBOUR_COLOUR = (120, 120, 120)
LINE_H = 16


def captioned_tile(image: np.ndarray, lines: Sequence[str], tile: int, colour=NEIGHBOUR_COLOUR,
                   scale: float = 0.4) -> np.ndarray:
    """(tile + len(lines) * LINE_H + 4, tile, 3) uint8: ``image`` fitted in a framed square, text below."""
    pane = blank_pane(tile + len(lines) * LINE_H + 4, tile)
    pane[:tile] = fit_image(image, tile, tile, interpolation=cv2.INTER_LINEAR)
    cv2.rectangle(pane, (0, 0), (tile - 1, tile - 1), colour, 2)
    for i, line in enumerate(lines):
        put_text(pane, fit_text(line, tile - 4, scale), (2, tile + (i + 1) * LINE_H - 2), scale)
    return pane


def neighbour_montage(query: np.ndarray, query_lines: Sequence[str], neighbours: Sequence[np.ndarray],
                      neighbour_lines: Sequence[Sequence[str]], tile: int = 160, cols: int | None = None,
                      title: str = "", gap: int = 6) -> np.ndarray:
    """The query (first, amber frame) then the neighbours nearest first, row by row, (H, W, 3) uint8 BGR.

    query, neighbours: (h, w, 3) uint8 BGR pictures; *_lines: caption lines under each.
    """
    tiles = [captioned_tile(query, query_lines, tile, QUERY_COLOUR)]
    tiles += [captioned_tile(img, lines, tile) for img, lines in zip(neighbours, neighbour_lines)]
    return tile_sheet(tiles, tile, cols, title, gap)


def tile_sheet(tiles: Sequence[np.ndarray], tile: int, cols: int | None = None, title: str = "",
               gap: int = 6) -> np.ndarray:
    """Captioned tiles (``captioned_tile``) row by row under a title line, (H, W, 3) uint8 BGR."""
    cols = cols or min(len(tiles), max(3, math.ceil(math.sqrt(len(tiles) * 1.8))))
    rows = math.ceil(len(tiles) / cols)
    cell_h = max(t.shape[0] for t in tiles)
    top = 28 if title else 0
    image = blank_pane(top + rows * (cell_h + gap) + gap, cols * (tile + gap) + gap)
    if title:
        put_text(image, fit_text(title, image.shape[1] - 12, 0.5), (gap, 20), 0.5)
    for n, t in enumerate(tiles):
        r, c = divmod(n, cols)
        y, x = top + gap + r * (cell_h + gap), gap + c * (tile + gap)
        image[y : y + t.shape[0], x : x + tile] = t
    return image


def neighbours_pane(thumbnails: Sequence[np.ndarray], lines: Sequence[Sequence[str]], height: int, width: int,
                    title: str = "", cols: int = 3) -> np.ndarray:
    """The live side pane (height, width, 3) uint8 BGR: a title line, then the neighbours' thumbnails
    nearest first, ``cols`` per row, each captioned; as many rows as fit."""
    pane = blank_pane(height, width)
    put_text(pane, fit_text(title, width - 8, 0.42), (4, 14), 0.42)
    gap, top = 4, 20
    tile = (width - (cols + 1) * gap) // cols
    cell_h = tile + 2 * LINE_H + 4
    rows = max(1, (height - top) // (cell_h + gap))
    for n, (thumb, caption) in enumerate(zip(thumbnails[: rows * cols], lines)):
        r, c = divmod(n, cols)
        y, x = top + r * (cell_h + gap), gap + c * (tile + gap)
        t = captioned_tile(thumb, caption[:2], tile, scale=0.38)
        pane[y : y + cell_h, x : x + tile] = t
    if not thumbnails:
        put_text(pane, "nothing to compare yet", (8, top + 24), 0.42)
    return pane
