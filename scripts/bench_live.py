"""Benchmark of the live loop: the demo clip through lite0 in a real window, N displayed frames.

Prints one JSON object per configuration: capture / compute / display fps measured after the
first result (model warm-up excluded), the latency from capture to display of the input frame
and of its activations (median, p95), and the compute step's mean time.

    python scripts/bench_live.py                      # starts its own Xvfb when DISPLAY is unset
    python scripts/bench_live.py --frames 300 --threads 1 2 --fast
    python scripts/bench_live.py --device cuda --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import torch

from toolbox.app.live import LiveOptions, open_live
from toolbox.config import load_config
from toolbox.runtime import keep_freed_memory


def start_xvfb() -> subprocess.Popen:
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1600x900x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    buf = b""
    while not buf.endswith(b"\n"):  # read up to the newline, or Xvfb dies writing it
        chunk = os.read(read_fd, 16)
        if not chunk:
            break
        buf += chunk
    os.close(read_fd)
    os.environ["DISPLAY"] = ":" + buf.decode().strip()
    return xvfb


def measure(source: str, device: str, threads: int, frames: int, fast: bool) -> dict:
    config = load_config(overrides={"model.device": device, "live.torch_threads": threads})
    app = open_live(source, config, LiveOptions(paced=not fast, max_frames=frames))
    marks = {}

    def watch():  # start the clock at the first result: model warm-up is not what we measure
        while app.results.get()[0] == 0 and not app.quit:
            time.sleep(0.005)
        marks["start"] = (time.perf_counter(), app.frames.get()[0], app.compute_thread.stats.computed,
                          app.stats.displayed, app.compute_thread.stats.total_ms,
                          len(app.stats.input_latency_ms), len(app.stats.result_latency_ms))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    app.run()
    end = (time.perf_counter(), app.frames.get()[0], app.compute_thread.stats.computed, app.stats.displayed,
           app.compute_thread.stats.total_ms)
    t0, cap0, comp0, disp0, ms0, in0, res0 = marks["start"]
    seconds = end[0] - t0
    app.stats.input_latency_ms[:in0] = []
    app.stats.result_latency_ms[:res0] = []
    computed = end[2] - comp0
    summary = app.stats.summary()
    return {
        "source": source, "model": app.model.name, "input": app.model.preprocess.size, "device": device,
        "torch_threads": threads, "paced": not fast, "source_fps": round(app.source.fps or 0, 2),
        "seconds": round(seconds, 2),
        "capture_fps": round((end[1] - cap0) / seconds, 2),
        "compute_fps": round(computed / seconds, 2),
        "display_fps": round((end[3] - disp0) / seconds, 2),
        "compute_step_ms_mean": round((end[4] - ms0) / max(computed, 1), 2),
        "skipped_frames": app.compute_thread.stats.skipped,
        "capture_to_display_ms": summary["input_latency_ms"],
        "capture_to_result_display_ms": summary["result_latency_ms"],
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="demo")
    parser.add_argument("--frames", type=int, default=300, help="displayed frames per configuration")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads to try")
    parser.add_argument("--fast", action="store_true", help="also run unpaced (file as fast as compute allows)")
    parser.add_argument("--device", nargs="+", choices=("cpu", "cuda"), default=None,
                        help="devices to measure (default: cpu, and cuda when torch sees a GPU)")
    args = parser.parse_args()
    keep_freed_memory()  # as the deepvis command does; DEEPVIS_MALLOC=system measures without
    xvfb = start_xvfb() if not os.environ.get("DISPLAY") else None
    try:
        devices = args.device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            for threads in args.threads:
                for fast in ([False, True] if args.fast else [False]):
                    print(json.dumps(measure(args.source, device, threads, args.frames, fast)), flush=True)
    finally:
        if xvfb is not None:
            xvfb.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
