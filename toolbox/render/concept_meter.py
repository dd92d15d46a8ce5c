"""The live concept meter: one row per (concept, layer) with a centred bar for the cosine between the
frame's activation and the CAV, and the sign of the class's directional derivative along the CAV."""
from __future__ import annotations

import cv2
import numpy as np

from toolbox.render.panes import blank_pane
from toolbox.render.text import fit_text, put_text

POSITIVE = (90, 200, 90)  # BGR
NEGATIVE = (80, 80, 220)
ROW_H = 22


def concept_meter(entries: list[tuple[str, str, float | None, float | None]], class_name: str, height: int,
                  width: int) -> np.ndarray:
    """(height, width, 3) uint8 BGR. entries: (concept, layer, cosine in [-1, 1] or None, derivative sign
    (+1, -1, 0) or None while unknown). The bar spans |cosine| from the middle, scaled so 0.5 fills half."""
    pane = blank_pane(height, width, (22, 22, 22))
    put_text(pane, fit_text(f"concepts: cos(act, CAV) | d {class_name or 'top-1'} / d CAV", width - 8, 0.4),
             (4, 15), 0.4)
    label_w, sign_w = width * 2 // 5, 22
    bar_x0, bar_x1 = label_w + 4, width - sign_w - 4
    mid = (bar_x0 + bar_x1) // 2
    for i, (concept, layer, cosine, sign) in enumerate(entries):
        y = 20 + i * ROW_H
        if y + ROW_H > height:
            break
        put_text(pane, fit_text(f"{concept} {layer}", label_w, 0.38), (4, y + 15), 0.38)
        cv2.line(pane, (mid, y + 3), (mid, y + ROW_H - 3), (120, 120, 120), 1)
        if cosine is None:
            put_text(pane, "other input size", (bar_x0, y + 15), 0.35)
        else:
            reach = int(round(min(abs(cosine) * 2, 1.0) * (bar_x1 - mid)))
            x0, x1 = (mid, mid + reach) if cosine >= 0 else (mid - reach, mid)
            cv2.rectangle(pane, (x0, y + 5), (x1, y + ROW_H - 5), POSITIVE if cosine >= 0 else NEGATIVE, -1)
            put_text(pane, f"{cosine:+.2f}", (bar_x0, y + 15), 0.35)
        mark = "?" if sign is None else "+" if sign > 0 else "-" if sign < 0 else "0"
        colour = POSITIVE if mark == "+" else NEGATIVE if mark == "-" else (200, 200, 200)
        put_text(pane, mark, (width - sign_w, y + 16), 0.55, colour, 2)
    return pane
