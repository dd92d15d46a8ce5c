"""CPU thread counts: chosen once per command from --threads / the config, or from the usable cores."""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
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
    with pytest.raises(DeepvisError, match="'threads' must be 1 or more"):
        load_config(overrides={"threads": value})


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_threads_option_below_one_exits_2_naming_the_option(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["layers", "--threads", value])
    assert exit_info.value.code == 2
    assert "--threads: must be a whole number of 1 or more" in capsys.readouterr().err


def test_importing_deepvis_makes_openmp_threads_wait_passively():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    probe = "import toolbox, os; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own setting wins
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
