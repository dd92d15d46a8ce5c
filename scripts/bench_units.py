"""Benchmark: seconds to make 64 channel images of one lite0 layer (default preset, 128 px), batched
against one channel at a time, on CPU and on CUDA when present. Prints one JSON object.

    python scripts/bench_units.py [--layer _blocks.8] [--channels 64] [--steps 128] [--batch 64]

``--steps`` below the preset's lowers the cost of a run on slow machines; the JSON then also
gives the time extrapolated to the preset's step count (time per step is constant).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from toolbox.analysis.unitvis import DEFAULT_PRESET, preset, unit_images
from toolbox.jobs.common import default_layer
from toolbox.models import load_model
from toolbox.runtime import keep_freed_memory, memory_mode


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(device: str, layer: str | None, channels: int, steps: int | None, batch: int) -> dict:
    model = load_model("lite0", device=device)
    layer = layer or default_layer(model)
    full = preset(DEFAULT_PRESET)
    settings = preset(DEFAULT_PRESET, steps=steps)
    chosen = list(range(channels))
    unit_images(model, layer, chosen[:2], preset(DEFAULT_PRESET, steps=2))  # warm-up
    batched = sum(_timed(lambda c=chosen[i : i + batch]: unit_images(model, layer, c, settings))
                  for i in range(0, channels, batch))
    single = sum(_timed(lambda c=c: unit_images(model, layer, [c], settings)) for c in chosen)
    scale = full.steps / settings.steps
    return {
        "device": device if device == "cpu" else torch.cuda.get_device_name(0),
        "layer": layer,
        "channels": channels,
        "size": settings.size,
        "steps_measured": settings.steps,
        "batch": batch,
        "batched_s": round(batched, 2),
        "one_by_one_s": round(single, 2),
        "speedup_batched": round(single / batched, 2),
        "batched_s_at_preset_steps": round(batched * scale, 1),
        "one_by_one_s_at_preset_steps": round(single * scale, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", help="lite0 layer (default: the middle visualisable layer)")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--steps", type=int, help="optimisation steps to time (default: the preset's)")
    parser.add_argument("--batch", type=int, default=64, help="channels per batch in the batched run")
    args = parser.parse_args()
    keep_freed_memory()  # as the deepvis command does; DEEPVIS_MALLOC=system measures without
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = [bench(d, args.layer, args.channels, args.steps, args.batch) for d in devices]
    print(json.dumps({"preset": DEFAULT_PRESET, "torch": torch.__version__, "malloc": memory_mode(),
                      "threads": torch.get_num_threads(),
                      "machine": platform.processor() or platform.machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
