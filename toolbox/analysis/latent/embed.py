"""Frames -> pooled feature vectors of one layer, in batches, with each frame's top-1 class."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from toolbox.analysis.latent.features import pooled_features
from toolbox.models.capture import ActivationCapture
from toolbox.models.registry import LoadedModel


@dataclass(frozen=True)
class Embedded:
    """vectors (N, C) float32; top1 (N,) int64 class indices; probability (N,) float32 of that class;
    grid: (H, W) positions per frame for patch vectors, else None."""

    vectors: np.ndarray
    top1: np.ndarray
    probability: np.ndarray
    grid: tuple[int, int] | None = None


class FrameEmbedder:
    """Hooks ``layer`` for the ``with`` block; ``embed(views)`` runs one batched forward."""

    def __init__(self, model: LoadedModel, layer: str, pool: str = "mean"):
        if model.module is None:
            from toolbox.errors import DeepvisError

            raise DeepvisError("feature vectors need a PyTorch model here, not an ONNX graph: use --model NAME")
        self.model, self.layer, self.pool = model, layer, pool
        self._capture = ActivationCapture(model.module, [layer])

    def __enter__(self) -> "FrameEmbedder":
        self._capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._capture.__exit__(*exc)

    def embed(self, views: list[np.ndarray]) -> Embedded:
        """Model views (S, S, 3) uint8 BGR -> their vectors and top-1 classes.

        pool "patch": one vector per spatial position instead of one per frame: vectors (N*H*W, C),
        position-major within each frame (row by row), and top1/probability repeated per position.
        """
        with torch.inference_mode():
            logits = self.model.module(self.model.input_tensor(views))
            act = self._capture.activations[self.layer].float()
            prob, top1 = logits.float().softmax(1).max(1)
        if self.pool == "patch":
            n, c, h, w = act.shape
            vectors = act.permute(0, 2, 3, 1).reshape(n * h * w, c)
            return Embedded(vectors.cpu().numpy(), top1.repeat_interleave(h * w).cpu().numpy(),
                            prob.repeat_interleave(h * w).cpu().numpy(), (h, w))
        return Embedded(pooled_features(act, self.pool).cpu().numpy(), top1.cpu().numpy(), prob.cpu().numpy())
