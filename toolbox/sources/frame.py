"""The unit of data every source yields."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One input picture.

    image: (H, W, 3) uint8, BGR (OpenCV order).
    index: position in the source (0-based; for live sources, a running count).
    timestamp: seconds from the start of the source (media time for files, wall time for live).
    """

    image: np.ndarray
    index: int
    timestamp: float
