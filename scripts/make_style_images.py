"""Draw the style images shipped in toolbox/styles/ (self-made, procedural, public domain).

    python scripts/make_style_images.py      # rewrites toolbox/styles/*.png (deterministic)

- stained-glass.png: a Voronoi mosaic of saturated cells with dark lead lines;
- strokes.png: thousands of short thick brush strokes in a warm/cool palette;
- waves.png: interfering sine waves through a cyclic colour map.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SIDE = 256
OUT = Path(__file__).resolve().parents[1] / "toolbox" / "styles"


def stained_glass(rng: np.random.Generator) -> np.ndarray:
    seeds = rng.uniform(0, SIDE, (70, 2)).astype(np.float32)
    palette = rng.integers(40, 256, (70, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    d = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    order = np.argsort(d, axis=2)
    nearest = order[..., 0]
    gap = np.sqrt(np.take_along_axis(d, order[..., 1:2], 2)[..., 0]) - np.sqrt(np.take_along_axis(d, order[..., :1], 2)[..., 0])
    image = palette[nearest].astype(np.float32)
    shade = 0.75 + 0.25 * np.sin(xx / 9.0 + nearest) * np.cos(yy / 11.0)
    image *= shade[..., None]
    image[gap < 2.5] = 20
    return np.clip(image, 0, 255).astype(np.uint8)


def strokes(rng: np.random.Generator) -> np.ndarray:
    palette = np.array([[30, 60, 160], [40, 140, 230], [60, 200, 250], [150, 90, 30], [200, 160, 60], [240, 230, 200]],
                       np.uint8)  # BGR: deep blue, orange, yellow, navy, teal, cream
    image = np.full((SIDE, SIDE, 3), (120, 70, 20), np.uint8)
    for _ in range(2500):
        x, y = rng.uniform(0, SIDE, 2)
        angle = np.sin(x / 40.0) + np.cos(y / 30.0)  # a swirling flow field
        length = rng.uniform(6, 16)
        dx, dy = length * np.cos(angle), length * np.sin(angle)
        colour = palette[rng.integers(len(palette))].tolist()
        cv2.line(image, (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy)), colour, int(rng.integers(2, 5)),
                 cv2.LINE_AA)
    return image


def waves(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    field = np.zeros((SIDE, SIDE), np.float32)
    for _ in range(5):
        cx, cy = rng.uniform(-SIDE, 2 * SIDE, 2)
        wavelength = rng.uniform(10, 30)
        field += np.sin(np.hypot(xx - cx, yy - cy) * 2 * np.pi / wavelength)
    levels = ((field - field.min()) / np.ptp(field) * 255).astype(np.uint8)
    return cv2.applyColorMap(levels, cv2.COLORMAP_TWILIGHT_SHIFTED)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for seed, (name, draw) in enumerate((("stained-glass", stained_glass), ("strokes", strokes), ("waves", waves))):
        cv2.imwrite(str(OUT / f"{name}.png"), draw(np.random.default_rng(seed)))
        print(OUT / f"{name}.png")


if __name__ == "__main__":
    main()
