"""From a camera frame to the tensor a model takes, and back."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


def square_crop_box(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the centred square crop the model sees."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def square_crop(image: np.ndarray) -> np.ndarray:
    top, left, side = square_crop_box(*image.shape[:2])
    return image[top : top + side, left : left + side]


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input.

    size: square input side in pixels.
    mean, std: per RGB channel, in the units of ``scale`` (x_model = (rgb * scale - mean) / std,
    with rgb in [0, 1]). Lite0: scale 255, mean 127, std 128. torchvision: scale 1, ImageNet mean/std.
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0

    def model_view(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame -> (size, size, 3) uint8 BGR: centre square, resized."""
        crop = square_crop(image)
        if crop.shape[0] == self.size:
            return np.ascontiguousarray(crop)
        interp = cv2.INTER_AREA if crop.shape[0] > self.size else cv2.INTER_LINEAR
        return cv2.resize(crop, (self.size, self.size), interpolation=interp)

    def to_tensor(self, views: list[np.ndarray] | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """Model views (size, size, 3) uint8 BGR -> (N, 3, size, size) float32 normalised RGB."""
        batch = np.stack(views) if isinstance(views, list) else views[None] if views.ndim == 3 else views
        x = torch.from_numpy(np.ascontiguousarray(batch[..., ::-1])).to(device)  # BGR -> RGB
        x = x.permute(0, 3, 1, 2).float()
        return self.normalise(x / 255.0)

    def normalise(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> model input."""
        mean = torch.tensor(self.mean, device=rgb01.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=rgb01.device).view(1, 3, 1, 1)
        return (rgb01 * self.scale - mean) / std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        """Model input -> RGB in [0, 1] (not clipped)."""
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x * std + mean) / self.scale

    def __call__(self, image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """One BGR frame -> (1, 3, size, size) model input."""
        return self.to_tensor(self.model_view(image), device)


LITE0 = Preprocess(224, (127.0, 127.0, 127.0), (128.0, 128.0, 128.0), scale=255.0)
IMAGENET = Preprocess(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
