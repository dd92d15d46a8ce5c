"""Benchmark the live view's forward (one frame, every visualisable layer captured) per backend.

torch eager vs torch channels_last vs onnxruntime (CPU; CUDA and TensorRT too when a GPU is
present), for lite0 and resnet18 at 224, each timed in this process, with the ratio against
torch eager on the same device. Also reports what ``--backend auto`` picks (a fresh measurement,
not the cached one). Prints JSON.

    python scripts/bench_backends.py [--models lite0 resnet18] [--runs 30] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys

import torch

from toolbox.analysis.backend_choice import choose_backend, interleaved_medians
from toolbox.analysis.onnx_frame_analysis import OnnxFrameAnalyser, TorchFrameAnalyser, synthetic_frame
from toolbox.atomic import write_json
from toolbox.errors import DeepvisError
from toolbox.models import load_model


def _load(name: str, device: str, channels_last: bool = False):
    try:
        return load_model(name, device=device, channels_last=channels_last)
    except DeepvisError:  # no cached torchvision weights: speed does not depend on the values
        return load_model(name, weights="none", device=device, channels_last=channels_last)


def bench_model(name: str, device: str, runs: int, warmup: int, threads: int | None) -> dict:
    eager = _load(name, device)
    analysers = {"torch_eager": TorchFrameAnalyser(eager),
                 "torch_channels_last": TorchFrameAnalyser(_load(name, device, channels_last=True))}
    if device == "cpu":
        analysers["onnxruntime_cpu"] = OnnxFrameAnalyser(eager, providers="cpu", threads=threads)
    else:
        analysers["onnxruntime_cuda"] = OnnxFrameAnalyser(eager, providers="cuda")
        analysers["onnxruntime_tensorrt"] = OnnxFrameAnalyser(eager, providers="tensorrt")
    with contextlib.ExitStack() as stack:
        for analyser in analysers.values():
            stack.enter_context(analyser)
        medians = interleaved_medians(analysers, synthetic_frame(eager.preprocess.size), runs, warmup)
    base = medians["torch_eager"]
    timings = {label: {"median_ms": round(ms, 3), "ratio_vs_torch_eager": round(base / ms, 3),
                       "provider": analysers[label].provider_label} for label, ms in medians.items()}
    fastest = min(timings, key=lambda k: timings[k]["median_ms"])
    choice = choose_backend(eager, eager.layers, "cpu" if device == "cpu" else "auto", refresh=True, threads=threads)
    return {"model": name, "device": device, "input": eager.preprocess.size, "layers": len(eager.layers),
            "backends": timings, "fastest": fastest,
            "auto": {"backend": choice.backend, "torch_ms": choice.torch_ms, "onnx_ms": choice.onnx_ms,
                     "provider": choice.provider}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lite0", "resnet18"])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (default: all cores); "
                        "1 gives steadier ratios on a loaded machine")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import onnxruntime

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "python": sys.version.split()[0]},
        "runs": args.runs, "warmup": args.warmup,
        "measure": "median wall ms per frame: preprocess + forward + every visualisable layer's output",
        "results": [bench_model(name, device, args.runs, args.warmup, args.threads)
                    for device in devices for name in args.models],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
