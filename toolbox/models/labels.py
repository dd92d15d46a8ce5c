"""ImageNet class names, taken from torchvision's weight metadata (no download)."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def read_labels(path) -> tuple[str, ...]:
    """One class name per line (blank lines ignored)."""
    with open(path) as f:
        return tuple(line.strip() for line in f if line.strip())
