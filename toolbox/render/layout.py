"""The window as one image: panes placed at rectangles from the layout config."""
from __future__ import annotations

import numpy as np

from toolbox.config import Rect
from toolbox.render.panes import blank_pane, paste_centred, scale_to_fit

__all__ = ["Rect", "compose", "WINDOW_BACKGROUND"]

WINDOW_BACKGROUND = (18, 18, 18)


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
