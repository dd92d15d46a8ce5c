"""Benchmark an archive run: videos per minute of ``deepvis analyze FOLDER`` in one process
(sequential) against ``--ray`` with 1 and 2 local workers (one thread each), on the same videos.

Each configuration runs the real command in a fresh process (Ray's start-up included, as a user
sees it), into a fresh output folder; configurations are interleaved over the repeats so that
machine load affects them alike. Ray's own start and stop, in a bare process, is timed too: on a
short batch it is most of the difference. Prints JSON (and writes it with --out).

    python scripts/bench_batch.py [--videos 4] [--seconds 2] [--repeats 2] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

CONFIGS = {
    "sequential": [],
    "ray_1_worker": ["--ray", "--workers", "1", "--threads", "1"],
    "ray_2_workers": ["--ray", "--workers", "2", "--threads", "1"],
}


def make_archive(folder: Path, videos: int, seconds: float, fps: int = 10, size=(160, 120)) -> None:
    """``videos`` clips of ``seconds`` each: half cat photo, half coffee photo, noisy frames."""
    photos = [np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1]),
              np.ascontiguousarray(skimage.data.coffee()[:, :, ::-1])]
    for n in range(videos):
        rng = np.random.default_rng(n)
        writer = cv2.VideoWriter(str(folder / f"clip{n:02d}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        for photo in (photos[n % 2], photos[1 - n % 2]):
            base = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.int16)
            for _ in range(int(fps * seconds / 2)):
                writer.write(np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8))
        writer.release()


def run_once(archive: Path, out: Path, extra: list[str]) -> float:
    """Wall seconds of one archive command (which must succeed)."""
    command = [sys.executable, "-m", "toolbox", "analyze", str(archive), "--out", str(out), "--quiet", *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def ray_startup_s() -> float:
    """Wall seconds of a fresh process that starts a local Ray and stops it (the fixed cost of --ray)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ray; ray.init(num_cpus=2, include_dashboard=False); ray.shutdown()"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each video")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deepvis-bench-batch-") as tmp:
        archive = Path(tmp) / "archive"
        archive.mkdir()
        make_archive(archive, args.videos, args.seconds)
        walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
        startup = []
        for repeat in range(args.repeats):
            for name, extra in CONFIGS.items():
                walls[name].append(run_once(archive, Path(tmp) / f"{name}-{repeat}", extra))
            startup.append(ray_startup_s())
    per_minute = {name: [round(60 * args.videos / w, 2) for w in ws] for name, ws in walls.items()}
    base = min(walls["sequential"])
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "videos": args.videos, "seconds_per_video": args.seconds, "fps": 10, "repeats": args.repeats,
        "wall_s": {name: [round(w, 2) for w in ws] for name, ws in walls.items()},
        "videos_per_minute": per_minute,
        "best_ratio_vs_sequential": {name: round(base / min(ws), 3) for name, ws in walls.items()},
        "ray_start_and_stop_s": [round(t, 2) for t in startup],
        "note": "each run is a fresh process (model load; Ray start-up for --ray); ranges over repeats",
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
