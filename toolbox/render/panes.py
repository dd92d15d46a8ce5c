"""Single panes: channel zoom, predictions, image fitting."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from toolbox.render.colormap import colormap_image
from toolbox.render.mosaic import BACKGROUND, resize_tiles, to_levels
from toolbox.render.text import fit_text, put_text

PANE_BACKGROUND = (30, 30, 30)


@functools.lru_cache(maxsize=32)
def _blank(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    pane = np.empty((height, width, 3), np.uint8)
    pane[:] = colour
    pane.flags.writeable = False
    return pane


def blank_pane(height: int, width: int, colour=PANE_BACKGROUND) -> np.ndarray:
    """A new (height, width, 3) uint8 image of one colour (a memset for greys, else a cached copy)."""
    b, g, r = colour
    if b == g == r:
        return np.full((height, width, 3), b, np.uint8)
    return _blank(height, width, (b, g, r)).copy()


def scale_to_fit(image: np.ndarray, height: int, width: int, interpolation=cv2.INTER_NEAREST,
                 enlarge: bool = True) -> np.ndarray:
    """``image`` resized to fit inside (height, width) keeping its aspect, as (h, w, 3) uint8.
    With ``enlarge=False`` an image that already fits keeps its size (pixel-exact)."""
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    if not enlarge:
        scale = min(scale, 1.0)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        if scale < 1:
            interpolation = cv2.INTER_AREA
        image = cv2.resize(image, (nw, nh), interpolation=interpolation)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


def paste_centred(target: np.ndarray, image: np.ndarray, background=PANE_BACKGROUND) -> np.ndarray:
    """Fill ``target`` (a pane or a view of one) with ``background`` and put ``image`` in its centre."""
    height, width = target.shape[:2]
    nh, nw = image.shape[:2]
    y, x = (height - nh) // 2, (width - nw) // 2
    if (nh, nw) != (height, width):
        b, g, r = background
        target[:] = b if b == g == r else background
    target[y : y + nh, x : x + nw] = image
    return target


def fit_image(image: np.ndarray, height: int, width: int, interpolation=cv2.INTER_NEAREST,
              background=PANE_BACKGROUND, enlarge: bool = True) -> np.ndarray:
    """Scale ``image`` to fit (height, width) keeping its aspect; centre it on a background.
    With ``enlarge=False`` an image that already fits keeps its size (pixel-exact)."""
    pane = np.empty((height, width, 3), np.uint8)
    return paste_centred(pane, scale_to_fit(image, height, width, interpolation, enlarge), background)


def channel_zoom(unit_map: torch.Tensor, height: int, width: int, colormap: str = "none") -> np.ndarray:
    """One normalised channel (H, W) in [0, 1] enlarged to fit the pane, pixels kept square."""
    h, w = unit_map.shape
    scale = max(1, min(height // h, width // w))
    levels = to_levels(resize_tiles(unit_map[None, None].float(), h * scale, w * scale)[0, 0])
    return fit_image(colormap_image(levels.cpu().numpy(), colormap), height, width, background=BACKGROUND)


def predictions_pane(predictions: list[tuple[str, float]], height: int, width: int,
                     font_scale: float = 0.45) -> np.ndarray:
    """Top-k labels with probability bars, best first; bar colour goes grey -> green with probability."""
    pane = blank_pane(height, width)
    rows = max(1, len(predictions))
    row_h = min(38, (height - 8) // rows)
    for i, (label, prob) in enumerate(predictions):
        y = 4 + i * row_h
        bar_w = int(round((width - 12) * float(prob)))
        g = int(120 + 135 * prob)
        cv2.rectangle(pane, (6, y + row_h - 12), (6 + bar_w, y + row_h - 4), (60, g, 60), -1)
        text = fit_text(f"{prob * 100:5.1f}% {label}", width - 12, font_scale)
        put_text(pane, text, (6, y + row_h - 16), font_scale)
    return pane


def labelled_pane(image: np.ndarray | None, label: str, height: int, width: int,
                  font_scale: float = 0.45) -> np.ndarray:
    """(height, width, 3) uint8 BGR: ``image`` (H, W, 3) uint8 BGR enlarged (bilinear) to fill the pane
    keeping its aspect, or a blank pane for None, with ``label`` (cut to the width) in a dark box along
    the top edge (e.g. the saliency method over its map)."""
    if image is None:
        pane = blank_pane(height, width)
    else:
        pane = fit_image(image, height, width, interpolation=cv2.INTER_LINEAR)
    text = fit_text(label, width - 12, font_scale)
    box_h = int(round(22 * font_scale / 0.45))
    pane[:box_h] = (pane[:box_h] * 0.35).astype(np.uint8)
    put_text(pane, text, (6, box_h - 7), font_scale)
    return pane
