"""Text drawn with OpenCV's Hershey font."""
from __future__ import annotations

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
TEXT = (235, 235, 235)


def put_text(image: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, colour=TEXT,
             thickness: int = 1) -> np.ndarray:
    """Draw ``text`` with its baseline-left corner at ``org`` (x, y), in place."""
    cv2.putText(image, text, org, FONT, scale, colour, thickness, cv2.LINE_AA)
    return image


def text_width(text: str, scale: float = 0.45, thickness: int = 1) -> int:
    return cv2.getTextSize(text, FONT, scale, thickness)[0][0]


def fit_text(text: str, width: int, scale: float = 0.45) -> str:
    """``text`` cut with an ellipsis so it fits ``width`` pixels."""
    if text_width(text, scale) <= width:
        return text
    while text and text_width(text + "...", scale) > width:
        text = text[:-1]
    return text + "..."


def text_strip(text: str, height: int, width: int, background=(25, 25, 25), scale: float = 0.45) -> np.ndarray:
    """A one-line status bar: (height, width, 3) uint8."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    return put_text(image, fit_text(text, width - 12, scale), (6, height // 2 + 5), scale)


def titled_image(image: np.ndarray, title: str, scale: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (H + strip, W, 3): ``title`` in a dark strip above the image, so a
    saved picture says what it shows (layer, channels, method)."""
    height = int(round(28 * scale / 0.5))
    strip = text_strip(fit_text(title, image.shape[1] - 8, scale), height, image.shape[1], scale=scale)
    return np.concatenate([strip, image], axis=0)
