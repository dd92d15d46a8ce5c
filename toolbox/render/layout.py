"""The window as one image: panes placed at rectangles from the layout config."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolbox.render.panes import blank_pane, paste_centred, scale_to_fit

WINDOW_BACKGROUND = (18, 18, 18)


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), the order numpy shapes use."""
        return self.h, self.w


def compose(width: int, height: int, rects: dict[str, Rect], images: dict[str, np.ndarray]) -> np.ndarray:
    """Place each pane image into its rectangle on a (height, width, 3) canvas: centred when
    smaller (never enlarged: panes that want enlarging do it themselves, so mosaics stay
    pixel-exact), shrunk when larger.

    Panes named in ``rects`` but absent from ``images`` stay background; images without a
    rectangle are ignored.
    """
    canvas = blank_pane(height, width, WINDOW_BACKGROUND)
    for name, rect in rects.items():
        image = images.get(name)
        if image is None:
            continue
        region = canvas[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]
        paste_centred(region, scale_to_fit(image, rect.h, rect.w, enlarge=False))
    return canvas
