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
from toolbox.runtime import keep_freed_memory


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(device: torch.device, channels_last: bool, capture: str, frames: int) -> dict:
    """Sequential stages per frame. The bare forward (same model, same tensor, no recording) is
    timed in the same iterations, interleaved, so machine load affects both alike."""
    config = load_config()
    model = load_model("lite0", device=device, channels_last=channels_last)
    layer = model.layers[len(model.layers) // 2]
    layers = {"none": [], "selected": [layer], "all": model.layers}[capture]
    source = open_source("demo", loop=True)
    stages = {k: [] for k in ("read", "preprocess", "forward", "mosaic_compose", "total")}
    bare = []
    x_bare = model.input_tensor(model.preprocess.model_view(source.read().image))
    with ActivationCapture(model.module, layers, gated=True) as cap:
        for i in range(frames + 5):
            sync(device)
            tb = time.perf_counter()
            with torch.inference_mode():
                model.module(x_bare)  # outside recording(): the hooks record nothing
            sync(device)
            t0 = time.perf_counter()
            frame = source.read()
            t1 = time.perf_counter()
            view = model.preprocess.model_view(frame.image)
            x = model.input_tensor(view)
            sync(device)
            t2 = time.perf_counter()
            with torch.inference_mode(), cap.recording():
                logits = model.module(x)
            sync(device)
            t3 = time.perf_counter()
            if layers:
                act = cap.activations[layer][0]
                predictions = top_predictions(logits[0], model.categories)
                render_window(WindowContent(view, act, 0, predictions, "bench"), config.layout, config.display)
            t4 = time.perf_counter()
            if i >= 5:
                bare.append((t0 - tb) * 1000)
                for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                    stages[key].append(value * 1000)
    source.close()
    med = {k: round(statistics.median(v), 3) for k, v in stages.items()}
    bare_ms = statistics.median(bare)
    return {
        "device": str(device), "channels_last": channels_last, "capture": capture,
        "fps": round(1000 / med["total"], 2), "stage_ms": med, "bare_forward_ms": round(bare_ms, 3),
        "overhead_vs_bare_forward": round(med["total"] / bare_ms - 1, 3),
    }


def run_pipelined(device: torch.device, channels_last: bool, frames: int, threads: int) -> dict:
    """The live app's arrangement: one thread reads, preprocesses and runs the forward (with the
    selected layer captured) while another renders, so rendering overlaps the next forward."""
    import queue
    import threading

    config = load_config()
    model = load_model("lite0", device=device, channels_last=channels_last)
    layer = model.layers[len(model.layers) // 2]
    source = open_source("demo", loop=True)
    results: queue.Queue = queue.Queue(maxsize=2)
    torch.set_num_threads(threads)

    def compute():
        with ActivationCapture(model.module, [layer]) as cap:
            for _ in range(frames + 5):
                view = model.preprocess.model_view(source.read().image)
                with torch.inference_mode():
                    logits = model.module(model.input_tensor(view))
                sync(device)
                results.put((view, logits[0], cap.activations[layer][0]))
        results.put(None)

    worker = threading.Thread(target=compute)
    worker.start()
    done = 0
    while (item := results.get()) is not None:
        view, logits, act = item
        render_window(WindowContent(view, act, 0, top_predictions(logits, model.categories), "bench"),
                      config.layout, config.display)
        done += 1
        if done == 5:
            t0 = time.perf_counter()
    elapsed = time.perf_counter() - t0
    worker.join()
    x = model.input_tensor(model.preprocess.model_view(source.read().image))
    bare = []
    with torch.inference_mode():
        for i in range(frames + 5):
            t = time.perf_counter()
            model.module(x)
            sync(device)
            if i >= 5:
                bare.append((time.perf_counter() - t) * 1000)
    source.close()
    frame_ms = elapsed * 1000 / frames
    bare_ms = statistics.median(bare)
    return {"device": str(device), "channels_last": channels_last, "capture": "selected", "arrangement":
            "pipelined (compute thread + render thread)", "torch_threads": threads,
            "fps": round(1000 / frame_ms, 2), "frame_ms": round(frame_ms, 3), "bare_forward_ms": round(bare_ms, 3),
            "overhead_vs_bare_forward": round(frame_ms / bare_ms - 1, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    keep_freed_memory()  # as the deepvis command does; DEEPVIS_MALLOC=system measures without
    device = torch.device(args.device)
    threads = torch.get_num_threads()
    results = []
    for channels_last in (False, True):
        for capture in ("none", "selected", "all"):
            results.append(run(device, channels_last, capture, args.frames))
    pipelined = [run_pipelined(device, channels_last, args.frames, 1) for channels_last in (False, True)]
    print(json.dumps({"benchmark": "pipeline", "model": "lite0", "input": 224, "torch_threads": threads,
                      "sequential": results, "pipelined": pipelined}, indent=2))


if __name__ == "__main__":
    main()
