"""Benchmark style transfer and inversion against the PyTorch "Neural Transfer" tutorial's algorithm, in one process.

The reference (``reference_tutorial``) is the tutorial's way: the *full* network in fp32 with
forward hooks recording the style and content layers, the style image's Gram matrices recomputed
every step (a forward of the style image per step), the content target once, Adam on the pixels.
Same model, layers, steps, losses and resolution as ``Stylist.stylise``. A second reference
(``reference_cached``) keeps the tutorial's full hooked network but computes the targets once, to
show how much of the gain is the cut + folded + fused network alone. Timings interleave the
runs and keep the best of ``--repeats``; CPU time is also given (the machine may be shared).
Prints one JSON object.

    python scripts/bench_style.py                       # CPU, 512x512 style transfer, 5 steps
    python scripts/bench_style.py --device cuda --steps 50
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import cv2
import numpy as np
import skimage.data
import torch

from toolbox.analysis.dream.core import bgr_to_rgb01
from toolbox.analysis.inversion import InversionSettings, invert
from toolbox.analysis.objectives.inversion import feature_distance
from toolbox.analysis.objectives.style import gram, pixel_tv, style_loss
from toolbox.analysis.style import LiveStylist, StyleSettings, Stylist
from toolbox.models import load_model
from toolbox.models.registry import resolve_device
from toolbox.runtime import keep_freed_memory

STYLE_IMAGE = "strokes.png"


def reference_tutorial(model, content: torch.Tensor, style: torch.Tensor, settings: StyleSettings, layers, content_layer,
                       steps: int, recompute_targets: bool = True) -> torch.Tensor:
    """(1, 3, H, W) RGB [0, 1] content -> stylised, the tutorial's loop with hooks on the full network."""
    acts = {}
    handles = [model.module.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o))
               for n in {*layers, content_layer}]

    def features(x):
        model.module(model.preprocess.normalise(x))  # the whole network runs
        return dict(acts)

    try:
        with torch.no_grad():
            content_target = features(content)[content_layer].detach()
            style_targets = {n: gram(a).detach() for n, a in features(style).items() if n in layers}
        x = content.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([x], lr=settings.lr)
        for _ in range(steps):
            if recompute_targets:
                with torch.no_grad():
                    style_targets = {n: gram(a).detach() for n, a in features(style).items() if n in layers}
            optimiser.zero_grad()
            f = features(x)
            loss = (settings.style_weight * style_loss(f, style_targets)
                    + settings.content_weight * feature_distance(f[content_layer], content_target)
                    + settings.tv_weight * pixel_tv(x))
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                x.clamp_(0, 1)
        return x.detach()
    finally:
        for h in handles:
            h.remove()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t, c = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t, time.process_time() - c


def photo(side_w: int, side_h: int, shift: int = 0) -> np.ndarray:
    cat = cv2.resize(np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1]), (side_w, side_h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.roll(cat, shift, axis=1))


def style_image() -> np.ndarray:
    from pathlib import Path

    return cv2.imread(str(Path(__file__).resolve().parents[1] / "toolbox" / "styles" / STYLE_IMAGE))


def bench_transfer(model, device, side: int, steps: int, repeats: int) -> dict:
    content = bgr_to_rgb01(photo(side, side), device)
    style = bgr_to_rgb01(cv2.resize(style_image(), (side, side)), device)
    settings = StyleSettings(steps=steps)
    stylist = Stylist(model, style, settings)
    layers, content_layer = stylist.layers, stylist.content
    times = {"core": [], "reference": [], "reference_cached_targets": []}
    for _ in range(repeats):
        times["core"].append(timed(lambda: stylist.stylise(content), device))
        times["reference"].append(timed(lambda: reference_tutorial(model, content, style, settings, layers, content_layer,
                                                                   steps), device))
        times["reference_cached_targets"].append(timed(lambda: reference_tutorial(
            model, content, style, settings, layers, content_layer, steps, recompute_targets=False), device))
    stylist.close()
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}
    out = {"size": f"{side}x{side}", "steps": steps, "layers": list(layers), "content_layer": content_layer}
    for key, (wall, cpu) in best.items():
        out[f"{key}_steps_per_s_wall"] = round(steps / wall, 3)
        out[f"{key}_steps_per_s_cpu"] = round(steps / cpu, 3)
    for ref in ("reference", "reference_cached_targets"):
        out[f"speedup_vs_{ref}_wall"] = round(best[ref][0] / best["core"][0], 2)
        out[f"speedup_vs_{ref}_cpu"] = round(best[ref][1] / best["core"][1], 2)
    return out


def bench_inversion(model, device, side: int, steps: int, layers) -> dict:
    rgb = bgr_to_rgb01(photo(side, side), device)
    out = {"size": f"{side}x{side}", "steps_timed": steps, "default_steps": InversionSettings().steps, "per_layer": {}}
    for layer in layers:
        wall, cpu = timed(lambda: invert(rgb, model, layer, InversionSettings(steps=steps)), device)
        out["per_layer"][layer] = {"s_per_step_wall": round(wall / steps, 4), "s_per_step_cpu": round(cpu / steps, 4),
                                   "default_run_s_wall": round(wall / steps * InversionSettings().steps, 1)}
    return out


def bench_live(model, device, side: int, frames: int, steps: int) -> dict:
    stylist = Stylist(model, bgr_to_rgb01(style_image(), device), StyleSettings(steps=steps))
    live = LiveStylist(stylist, steps=steps, first_steps=steps, max_side=side)
    clip = [photo(side, side * 3 // 4, 4 * i) for i in range(frames + 1)]
    live.step(clip[0])
    wall, cpu = timed(lambda: [live.step(f) for f in clip[1:]], device)
    stylist.close()
    return {"size": f"{side}x{side * 3 // 4}", "steps_per_frame": steps, "fps_wall": round(frames / wall, 2),
            "fps_cpu_time": round(frames / cpu, 2)}


def bench_cuda_frame(model, device, steps: int) -> dict:
    """Style transfer of one 640x480 frame with ``steps`` steps, seconds (the CUDA goal: under 1 s)."""
    content = bgr_to_rgb01(photo(640, 480), device)
    stylist = Stylist(model, bgr_to_rgb01(style_image(), device), StyleSettings(steps=steps))
    stylist.stylise(content, steps=2)
    wall, _ = timed(lambda: stylist.stylise(content), device)
    stylist.close()
    return {"size": "640x480", "steps": steps, "seconds": round(wall, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="lite0")
    parser.add_argument("--size", type=int, default=512, help="style transfer side, pixels (default 512)")
    parser.add_argument("--steps", type=int, default=5, help="style transfer steps timed (default 5)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--inversion-steps", type=int, default=5)
    parser.add_argument("--inversion-layers", default="_blocks.1,_blocks.7,_blocks.15,logits")
    parser.add_argument("--live-side", type=int, default=320)
    parser.add_argument("--live-steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip", nargs="*", default=(), choices=("transfer", "inversion", "live"))
    args = parser.parse_args()
    memory = keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    report = {"device": str(device), "model": args.model, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "memory": memory}
    if "transfer" not in args.skip:
        report["style_transfer"] = bench_transfer(model, device, args.size, args.steps, args.repeats)
    if "inversion" not in args.skip:
        report["inversion"] = bench_inversion(model, device, 224, args.inversion_steps,
                                              args.inversion_layers.split(","))
    if "live" not in args.skip:
        report["live_stylise"] = bench_live(model, device, args.live_side, 8, args.live_steps)
    if device.type == "cuda":
        report["cuda_frame_640x480"] = bench_cuda_frame(model, device, StyleSettings().steps)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
