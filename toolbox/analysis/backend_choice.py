"""Which backend runs a model's per-frame forwards: torch or onnxruntime (``--backend``).

``make_frame_analyser`` is the single integration point for jobs and the live app. For
``--backend auto`` it times both once on this machine and takes the faster: the measurement (a
few forwards of a noise frame with every captured layer, after warm-up) is cached in
<cache_root>/backend_choice.json, keyed by model, weights, input size, layers, providers,
library versions and the machine, so start-up pays for it once.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from toolbox.analysis.onnx_frame_analysis import OnnxFrameAnalyser, TorchFrameAnalyser, synthetic_frame
from toolbox.atomic import write_json
from toolbox.cache import cache_root
from toolbox.errors import DeepvisError
from toolbox.models.onnx_runtime import import_onnxruntime
from toolbox.models.registry import LoadedModel

BACKENDS = ("torch", "onnx", "auto")
CACHE_FILE = "backend_choice.json"


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "torch" or "onnx"
    torch_ms: float  # median forward with all layers captured, per frame
    onnx_ms: float
    provider: str  # provider_label of the onnx analyser measured
    cached: bool  # read from the cache rather than measured now


def _machine() -> str:
    return f"{platform.node()}|{platform.machine()}|{platform.processor()}|{os.cpu_count()}|{torch.get_num_threads()}"


def choice_key(model, layers: Sequence[str], providers: str, threads: int | None = None) -> str:
    import onnxruntime

    key = {"model": model.name, "weights_id": model.weights_id, "size": model.preprocess.size,
           "layers": list(layers), "device": str(model.device), "channels_last": model.channels_last,
           "providers": providers, "threads": threads, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "machine": _machine()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def interleaved_medians(analysers: dict, frame, runs: int, warmup: int) -> dict[str, float]:
    """{label: median ms per call} for analysers (already entered) timed in turn, one call each
    per round, so that a change in machine load during the measurement hits all of them alike."""
    for _ in range(warmup):
        for analyser in analysers.values():
            analyser(frame)
    times: dict[str, list[float]] = {label: [] for label in analysers}
    for _ in range(runs):
        for label, analyser in analysers.items():
            start = time.perf_counter()
            analyser(frame)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[label].append((time.perf_counter() - start) * 1000)
    return {label: statistics.median(values) for label, values in times.items()}


def measure_backends(model, layers: Sequence[str], providers: str = "auto", runs: int = 8,
                     warmup: int = 2, threads: int | None = None) -> BackendChoice:
    """Time both backends now (the onnx one exports the model first if not cached)."""
    frame = synthetic_frame(model.preprocess.size)
    onnx = OnnxFrameAnalyser(model, layers, providers, threads=threads)
    with TorchFrameAnalyser(model, layers) as torch_analyser, onnx:
        medians = interleaved_medians({"torch": torch_analyser, "onnx": onnx}, frame, runs, warmup)
    torch_ms, onnx_ms = medians["torch"], medians["onnx"]
    return BackendChoice("onnx" if onnx_ms < torch_ms else "torch", round(torch_ms, 3), round(onnx_ms, 3),
                         onnx.provider_label, cached=False)


def _read_cache(path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # absent or damaged: measure again


def choose_backend(model, layers: Sequence[str], providers: str = "auto", refresh: bool = False,
                   threads: int | None = None) -> BackendChoice:
    """The faster backend for this model and layer set on this machine, measured once and cached."""
    import_onnxruntime()  # a one-line DeepvisError if missing
    key = choice_key(model, layers, providers, threads)
    path = cache_root() / CACHE_FILE
    entries = _read_cache(path)
    entry = entries.get(key)
    if entry and not refresh:
        try:
            return BackendChoice(entry["backend"], entry["torch_ms"], entry["onnx_ms"], entry["provider"], cached=True)
        except KeyError:
            pass
    choice = measure_backends(model, layers, providers, threads=threads)
    entries = _read_cache(path)  # re-read: another process may have added entries meanwhile
    entries[key] = {"model": model.name, "backend": choice.backend, "torch_ms": choice.torch_ms,
                    "onnx_ms": choice.onnx_ms, "provider": choice.provider, "measured": time.time()}
    write_json(path, entries)
    return choice


def provider_choice(device_setting: str) -> str:
    """Config ``model.device`` (auto | cpu | cuda...) -> onnxruntime providers choice."""
    return "cpu" if device_setting == "cpu" else "auto"


def make_frame_analyser(model: LoadedModel, layers: Sequence[str] | None = None, backend: str = "torch",
                        providers: str = "auto", needs_gradients: bool = False, threads: int | None = None):
    """The analyser for this model, layers and backend.

    backend: torch | onnx | auto. auto measures both once per machine and model (cached, see
    choose_backend) and takes the faster. needs_gradients: the current view
    backpropagates, so torch is used whatever the backend (except for a user ONNX graph, which
    only onnxruntime runs: check ``supports_gradients``). A user ONNX graph always runs on onnx.
    threads: onnxruntime's CPU threads (match torch.get_num_threads() for a fair auto choice).
    """
    if backend not in BACKENDS:
        raise DeepvisError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    if model.module is None:
        return OnnxFrameAnalyser(model, layers, providers, threads=threads)
    if needs_gradients:
        return TorchFrameAnalyser(model, layers, note="gradients" if backend != "torch" else "")
    if backend == "auto":
        try:
            backend = choose_backend(model, model.layers if layers is None else layers, providers, threads=threads).backend
        except DeepvisError:  # no onnxruntime, or the model does not export: torch is always there
            return TorchFrameAnalyser(model, layers, note="onnx unavailable")
    if backend == "onnx":
        return OnnxFrameAnalyser(model, layers, providers, threads=threads)
    return TorchFrameAnalyser(model, layers)
