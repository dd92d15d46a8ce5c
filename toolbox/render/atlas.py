"""An atlas of a 2-D map: a grid of cells over the map, each showing the thumbnail of the point most
typical of the cell (nearest the cell's mean position), framed in that cell's majority colour, with
a colour legend. ``AtlasFrame`` maps map coordinates to atlas pixels (the live pane's moving point)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from toolbox.render.panes import blank_pane
from toolbox.render.text import fit_text, put_text, text_width

# 20 distinguishable colours (Tableau 20), BGR.
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23), (232, 199, 174), (120, 187, 255),
           (138, 223, 152), (150, 152, 255), (213, 176, 197), (148, 156, 196), (210, 182, 247), (199, 199, 199),
           (141, 219, 219), (229, 218, 158)]
OTHER = (90, 90, 90)
BACKGROUND = (24, 24, 24)


@dataclass(frozen=True)
class AtlasFrame:
    """Map coordinates -> atlas pixels: pixel = origin + (coord - low) * scale, y pointing down."""

    low: tuple[float, float]
    scale: float
    origin: tuple[int, int]
    side: int  # the plot square's side in pixels

    def to_pixels(self, coords: np.ndarray) -> np.ndarray:
        """(M, 2) map coordinates -> (M, 2) int (x, y) atlas pixels (may fall outside the plot)."""
        c = np.atleast_2d(np.asarray(coords, np.float64))
        x = self.origin[0] + (c[:, 0] - self.low[0]) * self.scale
        y = self.origin[1] + self.side - (c[:, 1] - self.low[1]) * self.scale
        return np.stack([x, y], 1).round().astype(np.int64)


def frame_for(coords: np.ndarray, side: int, origin: tuple[int, int] = (0, 0), margin: float = 0.04) -> AtlasFrame:
    """The frame that fits ``coords`` (N, 2) into a ``side``-pixel square with equal x and y scale."""
    low, high = coords.min(0), coords.max(0)
    extent = float(max(high - low).max()) or 1.0
    pad = extent * margin
    centre = (low + high) / 2
    low = centre - extent / 2 - pad
    return AtlasFrame((float(low[0]), float(low[1])), side / (extent + 2 * pad), origin, side)


def categorical_colours(labels: Sequence[str], max_named: int = len(PALETTE)) -> tuple[np.ndarray, list]:
    """Per-point BGR colours (N, 3) uint8 and the legend [(label, colour, count)], most frequent first;
    labels beyond the ``max_named`` most frequent share one grey ("other")."""
    values, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    colour_of = {values[i]: PALETTE[r] for r, i in enumerate(order[:max_named])}
    colours = np.array([colour_of.get(str(v), OTHER) for v in labels], np.uint8)
    legend = [(str(values[i]), PALETTE[r], int(counts[i])) for r, i in enumerate(order[:max_named])]
    rest = int(counts[order[max_named:]].sum())
    if rest:
        legend.append((f"other ({len(order) - max_named} labels)", OTHER, rest))
    return colours, legend


def ramp_colours(values: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Per-point BGR colours from viridis over ``values`` (N,) and the (low, high) the ramp spans."""
    values = np.asarray(values, np.float64)
    low, high = float(values.min()), float(values.max())
    levels = np.zeros(len(values), np.uint8) if high <= low else ((values - low) / (high - low) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels[:, None], cv2.COLORMAP_VIRIDIS)[:, 0], (low, high)


def _cells(pixels: np.ndarray, side: int, grid: int) -> dict[tuple[int, int], np.ndarray]:
    cell = side / grid
    rows = np.clip((pixels[:, 1] / cell).astype(int), 0, grid - 1)
    cols = np.clip((pixels[:, 0] / cell).astype(int), 0, grid - 1)
    cells: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(rows.tolist(), cols.tolist())):
        cells.setdefault(key, []).append(i)
    return {k: np.array(v) for k, v in cells.items()}


def atlas_plot(coords: np.ndarray, thumbnails: np.ndarray, colours: np.ndarray, side: int = 720,
               grid: int = 24) -> tuple[np.ndarray, AtlasFrame]:
    """(side, side, 3) uint8 BGR atlas of ``coords`` (N, 2) and its frame.

    thumbnails (N, t, t, 3) uint8 BGR; colours (N, 3) uint8 BGR. Each occupied cell shows the
    thumbnail of its most central point with a 2-px border in the cell's most frequent colour.
    """
    frame = frame_for(coords, side)
    pixels = frame.to_pixels(coords)
    image = blank_pane(side, side, BACKGROUND)
    cell = side // grid
    inner = max(1, cell - 4)
    for (r, c), members in _cells(pixels, side, grid).items():
        centre = pixels[members].mean(0)
        rep = members[np.argmin(((pixels[members] - centre) ** 2).sum(1))]
        keys, counts = np.unique(colours[members], axis=0, return_counts=True)
        colour = tuple(int(v) for v in keys[np.argmax(counts)])
        y, x = r * cell, c * cell
        image[y : y + cell, x : x + cell] = colour
        image[y + 2 : y + 2 + inner, x + 2 : x + 2 + inner] = cv2.resize(thumbnails[rep], (inner, inner),
                                                                         interpolation=cv2.INTER_AREA)
    return image, frame


def legend_panel(entries: Sequence[tuple[str, tuple[int, int, int], int]], height: int, width: int,
                 title: str = "") -> np.ndarray:
    """A (height, width, 3) column of colour swatches with their labels and point counts."""
    pane = blank_pane(height, width, BACKGROUND)
    y = 22
    if title:
        put_text(pane, fit_text(title, width - 12, 0.5), (8, y), 0.5)
        y += 12
    for label, colour, count in entries:
        if y + 22 > height:
            break
        cv2.rectangle(pane, (8, y + 4), (24, y + 18), tuple(int(v) for v in colour), -1)
        put_text(pane, fit_text(f"{label} ({count})", width - 40, 0.42), (32, y + 16), 0.42)
        y += 22
    return pane


def legend_strip(entries: Sequence[tuple[str, tuple[int, int, int], int]], height: int, width: int,
                 scale: float = 0.35) -> np.ndarray:
    """A (height, width, 3) one-line legend: a colour swatch and label per entry, left to right, as
    many as fit (most frequent first, as ``categorical_colours`` orders them)."""
    pane = blank_pane(height, width, BACKGROUND)
    x, box = 4, max(4, height - 6)
    for label, colour, _ in entries:
        room = width - x - box - 8
        if room < text_width("abc...", scale):
            break
        text = fit_text(label, min(room, width // 3), scale)
        cv2.rectangle(pane, (x, (height - box) // 2), (x + box, (height + box) // 2), tuple(int(v) for v in colour), -1)
        put_text(pane, text, (x + box + 3, height - 4), scale)
        x += box + 3 + text_width(text, scale) + 10
    return pane


def ramp_legend(low: float, high: float, height: int, width: int, title: str, unit: str = "s") -> np.ndarray:
    """A vertical viridis bar from ``low`` (top) to ``high`` (bottom) with its end values."""
    pane = blank_pane(height, width, BACKGROUND)
    put_text(pane, fit_text(title, width - 12, 0.5), (8, 22), 0.5)
    top, bottom = 40, max(60, height - 40)
    levels = np.linspace(0, 255, bottom - top).astype(np.uint8)[:, None]
    pane[top:bottom, 12:36] = cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS)[:, :1]
    put_text(pane, f"{low:.1f} {unit}", (44, top + 12), 0.42)
    put_text(pane, f"{high:.1f} {unit}", (44, bottom), 0.42)
    return pane


def atlas_figure(plot: np.ndarray, legend: np.ndarray, title: str) -> np.ndarray:
    """The atlas beside its legend, under a title line: (30 + side, side + legend width, 3) uint8."""
    side = plot.shape[0]
    image = blank_pane(side + 30, side + legend.shape[1], BACKGROUND)
    put_text(image, fit_text(title, image.shape[1] - 12, 0.5), (8, 21), 0.5)
    image[30:, :side] = plot
    image[30 : 30 + legend.shape[0], side:] = legend[: side]
    return image


def mark_points(image: np.ndarray, points: np.ndarray, colour=(255, 255, 255), radius: int = 6) -> np.ndarray:
    """Draw a trail (older points smaller and fainter, joined by lines) ending at the newest point
    (a ring); ``points`` (M, 2) int pixel (x, y), oldest first. In place; returns ``image``."""
    pts = [tuple(int(v) for v in p) for p in np.atleast_2d(points)]
    for i in range(1, len(pts)):
        fade = 0.3 + 0.7 * i / len(pts)
        cv2.line(image, pts[i - 1], pts[i], tuple(int(c * fade) for c in colour), 1, cv2.LINE_AA)
    for i, p in enumerate(pts[:-1]):
        cv2.circle(image, p, max(1, radius * (i + 1) // (2 * len(pts))), colour, -1, cv2.LINE_AA)
    if pts:
        cv2.circle(image, pts[-1], radius + 2, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.circle(image, pts[-1], radius, colour, 2, cv2.LINE_AA)
    return image
