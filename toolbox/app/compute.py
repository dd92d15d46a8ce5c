"""The compute step: newest frame + a snapshot of the state -> a ``LiveResult``.

    step = LiveCompute(model, layers, top_k=5)
    step.add_stage("saliency", saliency_fn, depends_on=("overlay",))   # an extension
    result = step(captured, state)        # result.extras["saliency"] = saliency_fn(result, state)

The forward is itself replaceable (``step.forward = callable(frame) -> FrameResult``), e.g. by a
forward that keeps the graph for gradient views; ``step.forward_for`` holds extension forwards
that take over for some states (fn(frame, state) -> FrameResult, or None to pass). The default
forward comes from ``make_frame_analyser`` (torch or onnxruntime). Stages run in the compute thread after the
forward; anything slower than a frame belongs in a background task (toolbox.app.tasks).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np
import torch

from toolbox.analysis.activations import Prediction, channel_means, top_predictions
from toolbox.analysis.frame_analysis import FrameResult
from toolbox.analysis.backend_choice import make_frame_analyser
from toolbox.app.state import AppState
from toolbox.app.threads import Captured
from toolbox.models.registry import LoadedModel
from toolbox.sources.frame import Frame


@dataclass
class LiveResult:
    """One computed frame, immutable once published.

    view: (S, S, 3) uint8 BGR model view (mirrored when the state says so).
    activations: {layer: (C, H, W)} float, on CPU. predictions: top-k, best first.
    extras: outputs of the extension stages by name. base: the window image rendered from this
    result for ``render_key`` (None when the compute thread does not render).
    """

    captured: Captured
    state: AppState
    view: np.ndarray
    predictions: list[Prediction]
    activations: dict[str, torch.Tensor]
    forward_ms: float
    finished_at: float
    extras: dict[str, Any] = field(default_factory=dict)
    base: np.ndarray | None = None
    render_key: tuple | None = None
    forward_output: FrameResult | None = None  # what the forward returned (an extension's may carry more)
    _means: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def frame_index(self) -> int:
        return self.captured.frame.index

    def channel_means(self, layer: str) -> torch.Tensor:
        """(C,) mean activation per channel of ``layer``, cached."""
        if layer not in self._means:
            self._means[layer] = channel_means(self.activations[layer])
        return self._means[layer]


Stage = Callable[[LiveResult, AppState], Any]


def mirrored(frame: Frame, mirror: bool) -> Frame:
    return Frame(cv2.flip(frame.image, 1), frame.index, frame.timestamp) if mirror else frame


class LiveCompute:
    """Runs the forward with activation capture on every visualisable layer (so changing layer
    needs no recompute), then the extension stages, then the optional ``render`` callback."""

    def __init__(self, model: LoadedModel, layers: list[str], top_k: int = 5,
                 render: Callable[[LiveResult, AppState], tuple[np.ndarray, tuple]] | None = None,
                 backend: str = "torch", providers: str = "auto", threads: int | None = None):
        self.model = model
        self.layers = layers
        self.top_k = top_k
        self.render = render
        self.analyser = make_frame_analyser(model, layers, backend, providers, threads=threads)
        self.forward: Callable[[Frame], FrameResult] = self.analyser
        # Extension forwards for some states (e.g. one forward + backward for a saliency view), first
        # non-None wins; they must give the same activations and logits as ``forward``.
        self.forward_for: list[Callable[[Frame, AppState], FrameResult | None]] = []
        self._stages: list[tuple[str, Stage, tuple[str, ...]]] = []

    def __enter__(self) -> "LiveCompute":
        self.analyser.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.analyser.__exit__(*exc)

    @property
    def provider_label(self) -> str:
        """Where the default forward runs, e.g. "torch CPU", "onnx CPU" (for the status line)."""
        return self.analyser.provider_label

    def add_stage(self, name: str, fn: Stage, depends_on: tuple[str, ...] = ()) -> None:
        """Run ``fn(result, state)`` after each forward; its value lands in ``result.extras[name]``.
        ``depends_on`` names AppState fields whose change must trigger a recompute of the same frame."""
        self._stages.append((name, fn, tuple(depends_on)))

    def key(self, state: AppState) -> tuple:
        """The state fields the result depends on (besides the frame)."""
        fields = ("mirror", "mode") + tuple(f for _, _, deps in self._stages for f in deps)
        return tuple(getattr(state, f) if hasattr(state, f) else state.extras.get(f) for f in fields)

    def __call__(self, captured: Captured, state: AppState) -> LiveResult:
        frame = mirrored(captured.frame, state.mirror)
        out = next((o for fn in self.forward_for if (o := fn(frame, state)) is not None), None) or self.forward(frame)
        activations = {name: act.detach().float().cpu() for name, act in out.activations.items()}
        result = LiveResult(captured, state, out.view, top_predictions(out.logits, self.model.categories, self.top_k),
                            activations, out.forward_ms, time.perf_counter(), forward_output=out)
        for name, fn, _ in self._stages:
            result.extras[name] = fn(result, state)
        if self.render is not None:
            result.base, result.render_key = self.render(result, state)
        result.finished_at = time.perf_counter()
        return result
