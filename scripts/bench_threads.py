"""Benchmark of CPU thread settings on an idle machine and under a competing load.

Measures two workloads: analyze's forward (lite0, every visualisable layer captured, one 640x480
frame) and one dream step (classic preset, a 640x480 image: forward, backward, update). Each
runs in a child process, so that OpenMP's wait policy (read once, when torch loads) can differ:

- ``deepvis``: threads as the deepvis command sets them (toolbox imported first: passive waiting),
  at the default count (toolbox.cpu_threads.use_threads()), at 1 and at N (every usable core);
- ``torch_defaults``: torch imported before deepvis with OpenMP's own wait policy (spinning),
  at torch's default count and at 1: what the commands did before.

The competing load is ``--load`` busy-loop processes (default: one per usable core) that this
script starts before and stops after the loaded runs. Settings are timed in turn, one call each
per round (after an untimed forward at the new count; each setting leads a round in turn), so
that a change in the machine's other load hits all of them alike; each figure is the median over
the rounds. The whole comparison is repeated ``--repeats`` times: the report
gives each repeat and the range of the default's ratio to the best setting.

    python scripts/bench_threads.py                  # idle and loaded, 3 repeats
    python scripts/bench_threads.py --repeats 1 --rounds 4
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from toolbox.cpu_threads import usable_cores

GOAL = {"idle": 1.1, "loaded": 1.5}  # the default's time over the best setting's

CHILD = r"""
import json, os, statistics, sys, time
settings = json.loads(sys.argv[1]); rounds = int(sys.argv[2]); order = sys.argv[3]
if order == "torch_first":
    import torch  # OpenMP loads before deepvis can ask for passive waiting
import toolbox
import numpy as np
import torch
from toolbox.cpu_threads import use_threads, default_threads
from toolbox.models import load_model
from toolbox.analysis.frame_analysis import FrameAnalyser
from toolbox.analysis.dream import DreamEngine, default_layers, preset
from toolbox.jobs.common import default_layer, layers_to_capture
from toolbox.sources.frame import Frame

model = load_model("lite0")
frame = Frame(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8), 0, 0.0)
rgb = torch.rand(1, 3, 480, 640, generator=torch.Generator().manual_seed(0))
engine = DreamEngine(model, preset("classic").with_layers(default_layers("classic", model.name, model.layers)))
generator = torch.Generator().manual_seed(0)
counts = {}
for label in settings:
    counts[label] = torch.get_num_threads() if label == "torch_default" else (
        use_threads(None) if label == "default" else int(label))
times = {label: {"forward_ms": [], "dream_step_ms": []} for label in settings}

def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000

with FrameAnalyser(model, layers_to_capture(model, default_layer(model))) as analyse, torch.enable_grad():
    for round_index in range(rounds + 1):  # round 0 warms every setting up
        shift = round_index % len(settings)  # each setting goes first in turn
        for label in settings[shift:] + settings[:shift]:
            torch.set_num_threads(counts[label])
            analyse(frame)  # untimed: a changed count starts or parks pool threads
            forward = timed(lambda: analyse(frame))
            step = timed(lambda: engine.step(rgb, generator))
            if round_index:
                times[label]["forward_ms"].append(forward)
                times[label]["dream_step_ms"].append(step)
engine.close()
print(json.dumps({label: {"threads": counts[label],
                          **{k: round(statistics.median(v), 1) for k, v in times[label].items()}}
                  for label in settings}))
"""


def child(settings: list[str], rounds: int, order: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the child's own import order decides
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(settings), str(rounds), order], env=env,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "child failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def busy_loops(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=10)


def machine_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy (any process) over ``seconds``, from /proc/stat."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return round(1 - (idle1 - idle0) / max(total1 - total0, 1), 2)


def one_condition(n: int, rounds: int) -> dict:
    """Both children in the machine's present state; -> figures per setting and the default's ratios."""
    before = machine_busy()
    ours = child(["default", "1", str(n)], rounds, "deepvis_first")
    before_theirs = machine_busy()
    theirs = child(["torch_default", "1"], rounds, "torch_first")
    rows = {f"deepvis_{k}": v for k, v in ours.items()} | {f"torch_spinning_{k}": v for k, v in theirs.items()}
    ratios = {}
    for workload in ("forward_ms", "dream_step_ms"):
        best = min(row[workload] for row in rows.values())
        ratios[workload] = round(rows["deepvis_default"][workload] / best, 2)
    return {"machine_busy_before": [before, before_theirs], "load_average_1min": round(os.getloadavg()[0], 2),
            "settings": rows, "default_over_best": ratios}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the whole comparison")
    parser.add_argument("--rounds", type=int, default=5, help="timed calls per setting in one child")
    parser.add_argument("--load", type=int, default=None, help="busy-loop processes (default: one per usable core)")
    parser.add_argument("--conditions", nargs="+", default=["idle", "loaded"], choices=("idle", "loaded"))
    args = parser.parse_args()
    n = usable_cores()
    load = n if args.load is None else args.load
    runs: dict[str, list] = {c: [] for c in args.conditions}
    for _ in range(args.repeats):
        for condition in args.conditions:
            loops = busy_loops(load) if condition == "loaded" else []
            try:
                runs[condition].append(one_condition(n, args.rounds))
            finally:
                stop(loops)
    summary = {}
    for condition, results in runs.items():
        summary[condition] = {}
        for workload in ("forward_ms", "dream_step_ms"):
            ratios = [r["default_over_best"][workload] for r in results]
            summary[condition][workload] = {"default_over_best_range": [min(ratios), max(ratios)],
                                            "goal": GOAL[condition], "met": max(ratios) <= GOAL[condition]}
    print(json.dumps({"benchmark": "threads", "usable_cores": n, "cpu_count": os.cpu_count(), "load_processes": load,
                      "note": "'idle' is this machine without our busy loops; other users' load is in machine_busy",
                      "summary": summary, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
