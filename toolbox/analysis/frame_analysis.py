"""One forward pass per frame with activation capture: the shared first step of every job."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from toolbox.models.capture import ActivationCapture
from toolbox.models.registry import LoadedModel
from toolbox.sources.frame import Frame


@dataclass
class FrameResult:
    """What the model saw and said for one frame.

    view: (S, S, 3) uint8 BGR, the square crop at model input size.
    logits: (num_classes,) on the model's device.
    activations: {layer: (C, H, W)} on the model's device, detached clones.
    forward_ms: wall time of preprocess + forward.
    """

    frame: Frame
    view: np.ndarray
    logits: torch.Tensor
    activations: dict[str, torch.Tensor]
    forward_ms: float


class FrameAnalyser:
    """Runs a model on frames, capturing a fixed set of layers; hooks live for the ``with`` block."""

    def __init__(self, model: LoadedModel, layers: list[str] | None = None):
        self.model = model
        self.layers = list(model.layers if layers is None else layers)
        self._capture = ActivationCapture(model.module, self.layers, gated=True)

    def __enter__(self) -> "FrameAnalyser":
        self._capture.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._capture.__exit__(*exc)

    def __call__(self, frame: Frame) -> FrameResult:
        start = time.perf_counter()
        view = self.model.preprocess.model_view(frame.image)
        with torch.inference_mode(), self._capture.recording():
            logits = self.model.module(self.model.input_tensor(view))
        activations = {name: act[0] for name, act in self._capture.activations.items()}
        return FrameResult(frame, view, logits[0], activations, (time.perf_counter() - start) * 1000)
