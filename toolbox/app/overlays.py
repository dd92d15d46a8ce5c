"""Live-only drawing on the window image: stale marks, no-signal, task progress bars, help.

These are presentation helpers the headless jobs never need (they have no stale results,
no signal loss and no keys); they take arrays and draw in place, and touch no window.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from toolbox.render.colormap import colormap_lut
from toolbox.render.layout import WINDOW_BACKGROUND, Rect
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
    """One labelled bar per (label, fraction in [0, 1]), side by side across ``rect`` (a strip of its
    own, so that bars never cover a pane's content); the strip is cleared first, so bars of tasks that
    ended are gone."""
    image[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w] = WINDOW_BACKGROUND
    if not bars:
        return
    width = rect.w // len(bars)
    for i, (label, fraction) in enumerate(bars):
        x0, x1 = rect.x + i * width + 3, rect.x + (i + 1) * width - 3
        y0, y1 = rect.y + 3, rect.y + rect.h - 4
        cv2.rectangle(image, (x0, y0), (x1, y1), (20, 20, 20), -1)
        cv2.rectangle(image, (x0, y0), (x0 + int((x1 - x0) * min(max(fraction, 0), 1)), y1), colour, -1)
        cv2.rectangle(image, (x0, y0), (x1, y1), (200, 200, 200), 1)
        put_text(image, fit_text(f"{label} {fraction * 100:.0f}%", x1 - x0 - 8), (x0 + 4, y1 - 6), 0.45)


HELP_BACKGROUND = (24, 24, 24)
HELP_TOP, HELP_MARGIN, HELP_GAP = 74, 30, 16


@dataclass(frozen=True)
class HelpPiece:
    """One drawn piece of the help: a key list (``is_key``) or a line of help text, at (x, y) baseline."""

    text: str
    x: int
    y: int
    width: int  # the space it may fill, in pixels
    is_key: bool


def wrap_words(text: str, width: int, scale: float) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (a longer word stays whole)."""
    lines, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and text_width(candidate, scale) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines


def help_layout(lines: list[tuple[str, str]], width: int, height: int) -> tuple[float, int, list[HelpPiece]]:
    """(font scale, row height, pieces) placing every (keys, help) line in full: columns filled top to
    bottom, long help text wrapped onto further rows, the largest font that fits (0.5 down to 0.3)."""
    for scale in (0.5, 0.45, 0.4, 0.35, 0.3):
        row_h = round(44 * scale)
        bottom = height - 12
        key_w = max((text_width(k, scale) for k, _ in lines), default=0) + HELP_GAP
        for columns in range(1, 5):
            col_w = (width - 2 * HELP_MARGIN) // columns
            text_w = col_w - key_w - HELP_GAP
            if text_w < 80:
                break
            pieces, col, y = [], 0, HELP_TOP
            for keys, text in lines:
                wrapped = wrap_words(text, text_w, scale) or [""]
                if y + (len(wrapped) - 1) * row_h > bottom:
                    col, y = col + 1, HELP_TOP
                x = HELP_MARGIN + col * col_w
                pieces.append(HelpPiece(keys, x, y, key_w - 8, True))
                for part in wrapped:
                    pieces.append(HelpPiece(part, x + key_w, y, text_w, False))
                    y += row_h
            fits = col < columns and all(text_width(p.text, scale) <= p.width for p in pieces)
            if fits:
                return scale, row_h, pieces
    raise ValueError(f"{len(lines)} help lines do not fit a {width}x{height} window")


def help_overlay(image: np.ndarray, lines: list[tuple[str, str]], title: str = "keys (h closes)") -> None:
    """Cover the window with an opaque panel listing the key table, every line in full."""
    image[:] = HELP_BACKGROUND
    h, w = image.shape[:2]
    put_text(image, title, (HELP_MARGIN, 40), 0.7, (255, 255, 255), 2)
    scale, _, pieces = help_layout(lines, w, h)
    for piece in pieces:
        colour = (120, 220, 255) if piece.is_key else (235, 235, 235)
        put_text(image, piece.text, (piece.x, piece.y), scale, colour)
