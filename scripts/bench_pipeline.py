"""Frames per second of source -> forward -> mosaic -> compose, and milliseconds per stage.

Prints JSON. CPU figures are meaningful as ratios against the bare forward pass measured in the
same process (`overhead_vs_bare_forward`); GPU figures are absolute.

    python scripts/bench_pipeline.py [--frames 60] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from toolbox.config import load_config
from toolbox.analysis.activations import top_predictions
from toolbox.models import ActivationCapture, load_model
from toolbox.render.window import WindowContent, render_window
from toolbox.sources import open_source


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(device: torch.device, channels_last: bool, capture: str, frames: int) -> dict:
    config = load_config()
    model = load_model("lite0", device=device, channels_last=channels_last)
    layer = model.layers[len(model.layers) // 2]
    layers = {"none": [], "selected": [layer], "all": model.layers}[capture]
    source = open_source("demo", loop=True)
    stages = {k: [] for k in ("read", "preprocess", "forward", "mosaic_compose", "total")}
    bare = []
    with ActivationCapture(model.module, layers) as cap:
        for i in range(frames + 5):
            t0 = time.perf_counter()
            frame = source.read()
            t1 = time.perf_counter()
            view = model.preprocess.model_view(frame.image)
            x = model.input_tensor(view)
            sync(device)
            t2 = time.perf_counter()
            with torch.inference_mode():
                logits = model.module(x)
            sync(device)
            t3 = time.perf_counter()
            act = cap.activations[layer][0] if layers else None
            if act is not None:
                predictions = top_predictions(logits[0], model.categories)
                render_window(WindowContent(view, act, 0, predictions, "bench"), config.layout, config.display)
            t4 = time.perf_counter()
            if i >= 5:
                for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                    stages[key].append(value * 1000)
    # The bare forward: the same tensor, no hooks, nothing else.
    x = model.input_tensor(model.preprocess.model_view(source.read().image))
    with torch.inference_mode():
        for i in range(frames + 5):
            sync(device)
            t0 = time.perf_counter()
            model.module(x)
            sync(device)
            if i >= 5:
                bare.append((time.perf_counter() - t0) * 1000)
    source.close()
    med = {k: round(statistics.median(v), 3) for k, v in stages.items()}
    bare_ms = statistics.median(bare)
    return {
        "device": str(device), "channels_last": channels_last, "capture": capture,
        "fps": round(1000 / med["total"], 2), "stage_ms": med, "bare_forward_ms": round(bare_ms, 3),
        "overhead_vs_bare_forward": round(med["total"] / bare_ms - 1, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    results = []
    for channels_last in (False, True):
        for capture in ("none", "selected", "all"):
            results.append(run(device, channels_last, capture, args.frames))
    print(json.dumps({"benchmark": "pipeline", "model": "lite0", "input": 224, "torch_threads": torch.get_num_threads(),
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
