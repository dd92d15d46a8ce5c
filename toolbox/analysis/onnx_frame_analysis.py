"""Per-frame forward passes through onnxruntime, and the torch analyser with the same extras.

``OnnxFrameAnalyser`` has FrameAnalyser's interface (context manager; ``__call__(frame) ->
FrameResult``) but runs an exported graph whose extra outputs are the captured layers. Both it
and ``TorchFrameAnalyser`` have ``provider_label`` (for the status line), ``supports_gradients``
and ``forward_logits`` (a batch forward for occlusion and RISE).
toolbox.analysis.backend_choice.make_frame_analyser picks one of them.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from toolbox.analysis.frame_analysis import FrameAnalyser, FrameResult
from toolbox.models.onnx_export import LOGITS_NAME, cache_dir, export_onnx
from toolbox.models.onnx_runtime import OnnxSession
from toolbox.models.onnx_user import GRADIENTS_UNAVAILABLE
from toolbox.models.registry import LoadedModel
from toolbox.sources.frame import Frame

class TorchFrameAnalyser(FrameAnalyser):
    """FrameAnalyser (torch eager, forward hooks) with the backend-neutral extras."""

    supports_gradients = True

    def __init__(self, model: LoadedModel, layers: Sequence[str] | None = None, note: str = ""):
        super().__init__(model, None if layers is None else list(layers))
        self._note = note

    @property
    def provider_label(self) -> str:
        """e.g. "torch CPU" or "torch CUDA"."""
        return f"torch {self.model.device.type.upper()}" + (f" ({self._note})" if self._note else "")

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) model input -> (N, num_classes) logits on the model's device, no gradients.
        The capture is gated (it records only inside ``recording()``), so a batch copies no layer."""
        with torch.inference_mode():
            return self.model.module(self.model._layout(x.to(self.model.device)))


class OnnxFrameAnalyser:
    """Runs a model through onnxruntime on frames, returning the same FrameResult as FrameAnalyser.

    model: a registered torch model (exported with ``layers`` as extra outputs, cached on disk)
    or a user ONNX graph (``model.onnx`` set). providers: "auto" | "cpu" | "cuda" | "tensorrt".
    threads: onnxruntime's intra-op threads (default: one per physical core).
    Activations and logits are on ``self.device``: the GPU under CUDA/TensorRT when torch sees
    it, else the CPU.
    """

    supports_gradients = False
    gradients_unavailable = GRADIENTS_UNAVAILABLE

    def __init__(self, model: LoadedModel, layers: Sequence[str] | None = None, providers: str = "auto",
                 exporter: str = "dynamo", threads: int | None = None):
        self.model = model
        self.layers = list(dict.fromkeys(model.layers if layers is None else layers))  # each output once
        if model.onnx is not None:
            source = model.onnx.graph_bytes(self.layers)
            self._logits_name = model.onnx.logits_name
            self._batch_dynamic = model.onnx.batch_dynamic
        else:
            source = export_onnx(model, self.layers, exporter)
            self._logits_name = LOGITS_NAME
            self._batch_dynamic = True
        self.session = OnnxSession(source, providers, cache=cache_dir(), threads=threads)
        self.device = self.session.device

    @property
    def provider_label(self) -> str:
        """e.g. "onnx CUDA", "onnx CPU (CUDA unavailable)"."""
        return self.session.provider_label

    def __enter__(self) -> "OnnxFrameAnalyser":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def _input(self, views) -> torch.Tensor:
        return self.model.preprocess.to_tensor(views, self.device)

    def __call__(self, frame: Frame) -> FrameResult:
        start = time.perf_counter()
        view = self.model.preprocess.model_view(frame.image)
        outputs = self.session.run(self._input(view), [self._logits_name, *self.layers])
        logits = outputs[self._logits_name].reshape(1, -1)
        activations = {name: outputs[name][0] for name in self.layers}
        return FrameResult(frame, view, logits[0], activations, (time.perf_counter() - start) * 1000)

    def forward_logits(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """(N, 3, S, S) model input -> (N, num_classes) logits on ``self.device``.
        A graph with a fixed batch of 1 is run one image at a time."""
        step = batch_size if self._batch_dynamic else 1
        chunks = []
        for start in range(0, len(x), step):
            batch = x[start:start + step]
            chunks.append(self.session.run(batch, [self._logits_name])[self._logits_name].reshape(len(batch), -1))
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]


def synthetic_frame(size: int, seed: int = 0) -> Frame:
    """A (size, size, 3) uint8 noise frame, for measurements."""
    image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Frame(image, 0, 0.0)
