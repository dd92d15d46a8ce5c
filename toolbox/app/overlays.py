"""Live-only drawing on the window image: stale marks, no-signal, task progress bars, help.

These are presentation helpers the headless jobs never need (they have no stale results,
no signal loss and no keys); they take arrays and draw in place, and touch no window.
"""
from __future__ import annotations

import cv2
import numpy as np

from toolbox.render.colormap import colormap_lut
from toolbox.render.layout import Rect
from toolbox.render.text import fit_text, put_text, text_width


def hex_colour(text: str) -> tuple[int, int, int]:
    """'#rrggbb' -> (b, g, r)."""
    text = text.lstrip("#")
    r, g, b = (int(text[i : i + 2], 16) for i in (0, 2, 4))
    return b, g, r


def channel_over_input(view: np.ndarray, unit_map: np.ndarray, colormap: str = "jet", alpha: float = 0.5) -> np.ndarray:
    """(S, S, 3) uint8 view blended with a (H, W) [0, 1] map upsampled to S x S: where the channel fires."""
    size = view.shape[1], view.shape[0]
    levels = (np.clip(cv2.resize(unit_map.astype(np.float32), size, interpolation=cv2.INTER_LINEAR), 0, 1)
              * 255).astype(np.uint8)
    heat = colormap_lut(colormap)[levels]
    return cv2.addWeighted(view, 1.0 - alpha, heat, alpha, 0.0)


def mark_stale(image: np.ndarray, rect: Rect, label: str, colour) -> None:
    """A 2-pixel frame and a tag in the pane's corner: this pane shows an older frame than the input."""
    x, y, w, h = rect.x, rect.y, rect.w, rect.h
    cv2.rectangle(image, (x + 1, y + 1), (x + w - 2, y + h - 2), colour, 2)
    tw = text_width(label, 0.45) + 10
    cv2.rectangle(image, (x + w - tw - 2, y + 2), (x + w - 3, y + 20), colour, -1)
    put_text(image, label, (x + w - tw + 3, y + 16), 0.45, (0, 0, 0))


def no_signal(image: np.ndarray, rect: Rect, text: str = "no signal, reconnecting") -> None:
    """Grey out a pane (the last frame stays visible, desaturated and dimmed) and write ``text``."""
    pane = image[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]
    grey = cv2.cvtColor(pane, cv2.COLOR_BGR2GRAY)
    pane[:] = (cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR).astype(np.uint16) // 2 + 40).astype(np.uint8)
    text = fit_text(text, rect.w - 16, 0.6)
    x = rect.x + max(8, (rect.w - text_width(text, 0.6, 2)) // 2)
    put_text(image, text, (x, rect.y + rect.h // 2), 0.6, (255, 255, 255), 2)


def progress_bars(image: np.ndarray, rect: Rect, bars: list[tuple[str, float]], colour) -> None:
    """One labelled bar per (label, fraction in [0, 1]) stacked from the bottom of ``rect``."""
    for i, (label, fraction) in enumerate(bars):
        y1 = rect.y + rect.h - 6 - i * 26
        y0 = y1 - 20
        x0, x1 = rect.x + 6, rect.x + rect.w - 6
        cv2.rectangle(image, (x0, y0), (x1, y1), (20, 20, 20), -1)
        cv2.rectangle(image, (x0, y0), (x0 + int((x1 - x0) * min(max(fraction, 0), 1)), y1), colour, -1)
        cv2.rectangle(image, (x0, y0), (x1, y1), (200, 200, 200), 1)
        put_text(image, fit_text(f"{label} {fraction * 100:.0f}%", x1 - x0 - 8), (x0 + 4, y1 - 6), 0.45)


def help_overlay(image: np.ndarray, lines: list[tuple[str, str]], title: str = "keys (h closes)") -> None:
    """Dim the window and list the key table in columns."""
    image[:] = (image.astype(np.uint16) * 3 // 10).astype(np.uint8)
    h, w = image.shape[:2]
    row_h, scale = 22, 0.5
    put_text(image, title, (40, 40), 0.7, (255, 255, 255), 2)
    rows_per_col = max(1, (h - 100) // row_h)
    col_w = (w - 80) // max(1, -(-len(lines) // rows_per_col))
    key_w = max(text_width(k, scale) for k, _ in lines) + 16 if lines else 0
    key_w = min(key_w, col_w // 2)
    for i, (keys, text) in enumerate(lines):
        col, row = divmod(i, rows_per_col)
        x, y = 40 + col * col_w, 74 + row * row_h
        put_text(image, fit_text(keys, key_w - 8, scale), (x, y), scale, (120, 220, 255))
        put_text(image, fit_text(text, col_w - key_w - 8, scale), (x + key_w, y), scale)
