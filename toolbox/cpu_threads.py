"""CPU thread counts of torch, onnxruntime and OpenCV, chosen once per process.

Waiting threads sleep: toolbox/__init__.py sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads
its OpenMP runtime (unless the environment already sets it). OpenMP's default is to spin at
every barrier, which a busy machine punishes hard: beside other busy processes on 2 cores,
lite0's forward took 0.5-5.5 s at torch's default 2 threads against 16-55 ms with passive
waiting, because each operator waits for a thread that is not scheduled. Passive waiting at
2 threads was also within 5 % of the best setting measured, idle or loaded, and faster than
one thread in every run, 1.2-9x (scripts/bench_threads.py). onnxruntime's own pool is told
the same (``allow_spinning`` off).

So the default count is every core this process may use (its CPU affinity, bounded by a cgroup
CPU quota, and by torch's own default, which counts physical cores or honours OMP_NUM_THREADS).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

_state: dict = {"threads": None, "torch_default": None}


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup quota (v2 cpu.max or v1 cfs quota/period), None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """CPUs this process may run on: its affinity mask, bounded by a cgroup CPU quota (>= 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def default_threads() -> int:
    """The count used when none is asked for: usable cores, at most torch's own default."""
    import torch

    if _state["torch_default"] is None:  # torch's choice before anyone set it
        _state["torch_default"] = torch.get_num_threads()
    return max(1, min(usable_cores(), _state["torch_default"]))


def use_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads and OpenCV's to ``requested`` (None: default_threads()) -> the count.

    Torch's inter-op pool is set to one thread: deepvis forks no parallel graph work, so more
    would only sit idle. onnxruntime sessions read the count from threads_in_use().
    """
    import cv2
    import torch

    count = default_threads() if requested is None else max(1, int(requested))
    torch.set_num_threads(count)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the pool starts; a second call keeps the first setting
        pass
    cv2.setNumThreads(count)
    _state["threads"] = count
    return count


def threads_in_use() -> int | None:
    """The count set by use_threads(), None if it was never called (libraries keep their defaults)."""
    return _state["threads"]


def spinning_allowed() -> bool:
    """False when OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE): onnxruntime should not spin either."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() != "PASSIVE"
