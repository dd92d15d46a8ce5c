"""CPU thread counts: chosen once per command from --threads / the config, or from the usable cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest
import torch

from toolbox import cpu_threads
from toolbox.cli import main
from toolbox.config import load_config
from toolbox.errors import DeepvisError


@pytest.fixture
def restore_threads():
    """The test process keeps its own counts (conftest) whatever a test sets."""
    saved = torch.get_num_threads(), cv2.getNumThreads(), cpu_threads._state["threads"]
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])
    cpu_threads._state["threads"] = saved[2]


def test_cgroup_v2_quota_and_unlimited(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_threads._cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_threads._cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_threads._cgroup_cpu_limit(tmp_path) == 3.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_threads._cgroup_cpu_limit(tmp_path) is None


def test_usable_cores_follow_the_affinity_mask_and_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    monkeypatch.setattr(cpu_threads, "_cgroup_cpu_limit", lambda: None)
    assert cpu_threads.usable_cores() == 6
    monkeypatch.setattr(cpu_threads, "_cgroup_cpu_limit", lambda: 2.5)
    assert cpu_threads.usable_cores() == 3  # a part core still runs a thread


def test_default_is_the_usable_cores_at_most_torchs_own_default(monkeypatch):
    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: 64)
    monkeypatch.setitem(cpu_threads._state, "torch_default", 8)
    assert cpu_threads.default_threads() == 8
    monkeypatch.setattr(cpu_threads, "usable_cores", lambda: 3)
    assert cpu_threads.default_threads() == 3


def test_use_threads_sets_torch_and_opencv(restore_threads):
    assert cpu_threads.use_threads(1) == 1
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
    assert cpu_threads.threads_in_use() == 1


def test_threads_option_reaches_torch_through_the_command_line(restore_threads, capsys):
    torch.set_num_threads(2)
    assert main(["layers", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1 and cpu_threads.threads_in_use() == 1


def test_config_threads_key_is_used_when_no_option_is_given(restore_threads, tmp_path, capsys):
    config = tmp_path / "one.yaml"
    config.write_text("threads: 1\n")
    torch.set_num_threads(2)
    assert main(["layers", "--config", str(config)]) == 0
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", [0, -2])
def test_config_threads_below_one_is_refused(value):
    with pytest.raises(DeepvisError, match=f"threads must be 1 or more, not {value}"):
        load_config(overrides={"threads": value})


def test_threads_option_that_is_no_number_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["layers", "--threads", "two"])
    assert exit_info.value.code == 2 and "--threads: invalid int value" in capsys.readouterr().err


def test_importing_deepvis_makes_openmp_threads_wait_passively():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    probe = "import toolbox, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own setting wins
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"


CONTENDED = """
import json, statistics, subprocess, sys, time
busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
try:
    import toolbox  # first, as the deepvis command does
    import torch
    from toolbox.models import load_model
    module = load_model("lite0").module
    x = torch.rand(1, 3, 160, 160)
    times = {1: [], 2: []}
    with torch.inference_mode():
        for _ in range(6):
            for count in (1, 2):
                torch.set_num_threads(count)
                module(x)
                start = time.perf_counter()
                module(x)
                times[count].append(time.perf_counter() - start)
    print(json.dumps({c: statistics.median(t[1:]) for c, t in times.items()}))
finally:
    for process in busy:
        process.kill()
"""


def test_two_threads_beside_two_busy_processes_are_not_many_times_slower_than_one():
    """With OpenMP spinning, a forward at 2 threads beside 2 busy processes took 30-100x the 1-thread time
    here; with passive waiting about the same. 5x leaves room for a busy machine's noise."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", CONTENDED], env=env, capture_output=True, text=True, timeout=300,
                         check=True)
    median = {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
    assert median[2] < 5 * median[1], median


def test_live_threads_option_sets_the_compute_threads_count(monkeypatch, restore_threads, tmp_path):
    seen = {}

    def run_live(source, config, options):
        seen["config"] = config
        return types.SimpleNamespace(failure=None, exit_code=0)

    monkeypatch.setattr("toolbox.app.live.run_live", run_live)
    monkeypatch.setattr(os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))  # the command ends with it
    with pytest.raises(SystemExit):
        main(["live", "demo", "--threads", "3", "--out", str(tmp_path)])
    assert seen["config"].live.torch_threads == 3


def test_nearest_neighbour_search_uses_the_process_thread_count(monkeypatch):
    faiss = pytest.importorskip("faiss")
    from toolbox.analysis.latent import search

    saved = faiss.omp_get_max_threads()
    monkeypatch.setattr(search, "threads_in_use", lambda: 1)
    try:
        search.VectorSearch(np.zeros((4, 3), np.float32))
        assert faiss.omp_get_max_threads() == 1
    finally:
        faiss.omp_set_num_threads(saved)
