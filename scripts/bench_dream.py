"""Benchmark the DeepDream core against a straightforward port of the TF2 tutorial, in one process.

The reference (``reference_tf_tutorial``) is the tutorial's algorithm as published: whole-image
resize octaves base*1.3**n for n = -2..2, per step a random roll of up to +-512, a Python loop over
512 px tiles that skips the last tile unless it is the only one, the *full* network in fp32 with
hooks on the dream layers, per-tile loss = sum of per-layer means, gradient with respect to the
whole rolled image, global std normalisation, step 0.01 in [-1, 1], clip. Same model, layers,
octaves, steps and resolution as our ``tf-tutorial`` preset. Timings interleave reference and core
and keep the best of ``--repeats``. Prints one JSON object.

Like the deepvis command, the script has glibc keep freed memory (toolbox.runtime), for the
reference and the core alike; DEEPVIS_MALLOC=system measures both without it.

    python scripts/bench_dream.py                 # CPU, 640x480, 10 steps per octave
    python scripts/bench_dream.py --device cuda --sizes 640x480 1920x1080 --steps 100
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

from toolbox.analysis.dream import DreamEngine, LiveDreamer, default_layers, dream, live_settings, preset
from toolbox.analysis.dream.core import bgr_to_rgb01
from toolbox.analysis.optimise.octaves import resize, resize_sizes
from toolbox.models import load_model
from toolbox.models.registry import resolve_device
from toolbox.runtime import keep_freed_memory, memory_mode


def reference_tf_tutorial(model, rgb: torch.Tensor, layers, steps: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) RGB [0, 1] -> dreamed, the TF2 tutorial's tiled algorithm ported line by line."""
    acts = {}
    handles = [model.module.get_submodule(n).register_forward_hook(
        lambda m, i, o, n=n: acts.__setitem__(n, o)) for n in layers]
    gen = torch.Generator().manual_seed(seed)
    tile = 512

    def calc_loss(img):
        model.module(model.preprocess.normalise(img))  # the whole network runs
        return sum(acts[n].mean() for n in layers)

    try:
        base = rgb.shape[-2:]
        img = rgb * 2 - 1  # the tutorial's [-1, 1] space
        for size in resize_sizes(base[0], base[1], -2, 2, 1.3):
            img = resize(img, size)
            for _ in range(steps):
                shift = torch.randint(-tile, tile, (2,), generator=gen).tolist()
                rolled = torch.roll(img, shift, dims=(-2, -1)).detach().requires_grad_(True)
                grads = torch.zeros_like(img)
                h, w = size
                xs = list(range(0, w, tile))[:-1] or [0]
                ys = list(range(0, h, tile))[:-1] or [0]
                for x in xs:
                    for y in ys:
                        piece = rolled[:, :, y:y + tile, x:x + tile]
                        loss = calc_loss((piece + 1) / 2)
                        grads = grads + torch.autograd.grad(loss, rolled)[0]
                grads = torch.roll(grads, (-shift[0], -shift[1]), dims=(-2, -1))
                grads = grads / (grads.std() + 1e-8)
                img = (img + 0.01 * grads).clamp(-1, 1).detach()
        return (resize(img, tuple(base)) + 1) / 2
    finally:
        for h in handles:
            h.remove()


def pixel_steps(size, steps):
    """(core, reference) pixels that receive a gradient per run: the core covers every pixel of every
    octave; the tutorial's loop skips the last tile origin on each axis unless it is the only one."""
    core = ref = 0
    for h, w in resize_sizes(size[0], size[1], -2, 2, 1.3):
        core += h * w
        xs = list(range(0, w, 512))[:-1] or [0]
        ys = list(range(0, h, 512))[:-1] or [0]
        ref += sum(min(512, w - x) * min(512, h - y) for x in xs for y in ys)
    return core * steps, ref * steps


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """(wall seconds, process CPU seconds) of fn(). On a shared CPU the CPU time is the fair
    measure of work (other processes stretch wall time, not our CPU time)."""
    sync(device)
    t, c = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t, time.process_time() - c


def frame_at(size, shift=0):
    h, w = size
    cat = cv2.resize(np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1]), (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.roll(cat, shift, axis=1))


def bench_size(model, size, steps, repeats, device, tf_layers, classic_layers, with_reference=True, compile="none"):
    image = frame_at(size)
    rgb = bgr_to_rgb01(image, device)
    tf = preset("tf-tutorial").with_layers(tf_layers).replace(steps=steps, compile=compile)
    classic = preset("classic").with_layers(classic_layers).replace(compile=compile)
    row = {"size": f"{size[1]}x{size[0]}", "tf_steps_per_octave": steps}
    engines = {
        "core_untiled": DreamEngine(model, tf),
        "core_tiled_512": DreamEngine(model, tf.replace(tile=512, halo=64)),
        "classic": DreamEngine(model, classic),
    }
    times = {k: [] for k in [*engines, "reference"]}
    for _ in range(repeats):
        if with_reference:
            times["reference"].append(timed(lambda: reference_tf_tutorial(model, rgb, tf_layers, steps), device))
        for key, engine in engines.items():
            times[key].append(timed(lambda: dream(image, model, engine.settings, engine=engine), device))
    for engine in engines.values():
        engine.close()
    for clock, index in (("wall", 0), ("cpu", 1)):
        if clock == "cpu" and device.type == "cuda":
            continue
        best = {k: min(t[index] for t in v) for k, v in times.items() if v}
        row.update({f"{k}_{clock}_s": round(v, 3) for k, v in best.items()})
        if with_reference:
            row[f"speedup_untiled_vs_reference_{clock}"] = round(best["reference"] / best["core_untiled"], 2)
            row[f"speedup_tiled_vs_reference_{clock}"] = round(best["reference"] / best["core_tiled_512"], 2)
        row[f"classic_{clock}_ms"] = round(1000 * best["classic"], 1)
    if with_reference:
        core_px, ref_px = pixel_steps(size, steps)
        row["pixel_steps_core_over_reference"] = round(core_px / ref_px, 3)
        clock = "wall" if device.type == "cuda" else "cpu"
        row[f"speedup_per_pixel_step_{clock}"] = round(row[f"speedup_untiled_vs_reference_{clock}"] * core_px / ref_px, 2)
    return row


def bench_live(model, size, layers, device, frames=12):
    dreamer = LiveDreamer(model, live_settings(preset("classic").with_layers(layers), steps=2))
    clip = [frame_at(size, 3 * i) for i in range(frames)]
    dreamer.step(clip[0])  # warm-up
    wall, cpu = timed(lambda: [dreamer.step(f) for f in clip[1:]], device)
    dreamer.close()
    row = {"size": f"{size[1]}x{size[0]}", "steps_per_frame": 2, "fps_wall": round((frames - 1) / wall, 2)}
    if device.type != "cuda":
        row["fps_cpu_time"] = round((frames - 1) / cpu, 2)
    return row


def bench_levers(model, size, layers, device, repeats=3):
    """CPU seconds (wall on CUDA) per gradient at ``size`` for each speed lever, interleaved."""
    rgb = torch.rand(1, 3, *size, device=device)
    settings = preset("classic").with_layers(layers)
    variants = {
        "folded_fused_channels_last": {},
        "folded_channels_last": {"fuse": False},
        "folded_contiguous": {"channels_last": False},
        "unfolded_channels_last": {"fold_bn": False},
        "hooks_unfolded_channels_last": {"cut": "hooks"},
    }
    engines = {k: DreamEngine(model, settings, **kw) for k, kw in variants.items()}
    best = {k: float("inf") for k in engines}
    with torch.enable_grad():
        for _ in range(repeats + 1):
            for key, engine in engines.items():
                wall, cpu = timed(lambda: engine.gradient(rgb), device)
                best[key] = min(best[key], wall if device.type == "cuda" else cpu)
    for engine in engines.values():
        engine.close()
    return {f"{k}_ms": round(1000 * v, 1) for k, v in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="lite0")
    parser.add_argument("--sizes", nargs="+", default=None, help="WxH, default 640x480 (+1920x1080 on CUDA)")
    parser.add_argument("--steps", type=int, default=10, help="tf-tutorial steps per octave (tutorial: 100)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", default="none", choices=("none", "compile", "cudagraph"),
                        help="torch.compile the cut network (CUDA; fixed tile shapes)")
    args = parser.parse_args()
    keep_freed_memory()  # as the deepvis command does; DEEPVIS_MALLOC=system measures without
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_model(args.model, device=device)
    sizes = args.sizes or (["640x480", "1920x1080"] if device.type == "cuda" else ["640x480"])
    sizes = [tuple(int(v) for v in s.split("x"))[::-1] for s in sizes]
    tf_layers = default_layers("tf-tutorial", model.name, model.layers)
    classic_layers = default_layers("classic", model.name, model.layers)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "malloc": memory_mode(),
        "model": model.name,
        "tf_layers": list(tf_layers),
        "classic_layers": list(classic_layers),
        "levers_640x480": bench_levers(model, (480, 640), classic_layers, device),
        "compile": args.compile,
        "runs": [bench_size(model, s, args.steps, args.repeats, device, tf_layers, classic_layers, compile=args.compile)
                 for s in sizes],
        "live_dream": bench_live(model, (480, 640), classic_layers, device),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
