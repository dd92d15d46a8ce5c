"""``--backend auto``: time torch and onnxruntime once on this machine, remember the faster.

The measurement (a few forwards of a noise frame with every captured layer, after warm-up) is
cached in <cache_root>/backend_choice.json, keyed by model, weights, input size, layers,
providers, library versions and the machine, so start-up pays for it once.
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

from toolbox.atomic import write_json
from toolbox.cache import cache_root

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
    from toolbox.analysis.onnx_frame_analysis import OnnxFrameAnalyser, TorchFrameAnalyser, synthetic_frame

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
    from toolbox.models.onnx_runtime import import_onnxruntime

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
