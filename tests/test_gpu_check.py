"""scripts/gpu_check.sh: the plan runs here without a GPU (--dry-run), and the summary is built right."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_dry_run_lists_the_cuda_tests_and_the_three_benchmarks_and_finds_no_problem(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["problems"] == [] and report["budget_s"] <= 8 * 60
    commands = {step["name"]: step["command"] for step in report["steps"]}
    assert list(commands) == ["cuda_tests", "bench_dream", "bench_live", "bench_saliency"]
    assert "-m cuda" in commands["cuda_tests"] and "tests/test_cuda.py" in commands["cuda_tests"]
    assert commands["bench_dream"].endswith("bench_dream.py --device cuda --sizes 640x480 1920x1080")
    assert "--device cuda" in commands["bench_live"] and "--device cuda" in commands["bench_saliency"]
    assert sum(step["limit_s"] for step in report["steps"]) <= 8 * 60
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def test_without_a_display_the_live_step_is_the_window_less_pipeline(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check, "display_available", lambda: False)
    live = {step.name: step for step in gpu_check.plan("report.xml")}["bench_live"]
    assert live.args[:3] == ["scripts/bench_pipeline.py", "--device", "cuda"] and "no X display" in live.note
    assert gpu_check.check_plan([live]) == []


def test_plan_check_names_an_option_a_script_lacks(gpu_check, monkeypatch, tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "scripts" / "bench_x.py").write_text("import argparse\np = argparse.ArgumentParser()\n"
                                                     "p.add_argument('--sizes', nargs='+')\n")
    monkeypatch.setattr(gpu_check, "ROOT", tmp_path)
    step = gpu_check.Step("bench_x", ["scripts/bench_x.py", "--device", "cuda", "--sizes", "1x1"], 10,
                          files=["scripts/bench_x.py"])
    assert gpu_check.check_plan([step]) == ["bench_x: scripts/bench_x.py has no option --device",
                                            "cuda_tests: no test file marks tests with pytest.mark.cuda"]


def test_benchmark_output_is_read_as_one_document_or_json_lines(gpu_check):
    assert gpu_check.json_output('{"a": 1}\n') == {"a": 1}
    assert gpu_check.json_output('warming up\n{\n  "a": [1, 2]\n}\n') == {"a": [1, 2]}
    assert gpu_check.json_output('{"fps": 30}\nnoise\n{"fps": 31}\n') == [{"fps": 30}, {"fps": 31}]
    assert gpu_check.json_output("Traceback ...\nRuntimeError: CUDA error") is None


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.test_cuda" name="test_a"/>
<testcase classname="tests.test_cuda" name="test_b"><failure message="boom"/></testcase>
<testcase classname="tests.test_cuda" name="test_c"><skipped message="needs a CUDA GPU"/></testcase>
</testsuite></testsuites>"""


def test_summary_runs_every_step_and_is_ok_only_when_all_cuda_tests_passed(gpu_check, monkeypatch, tmp_path):
    """The whole run with stand-in steps: each step's JSON lands in the summary; a skipped cuda test is not ok."""
    def plan(junit):
        write_junit = f"import pathlib; pathlib.Path({junit!r}).write_text({JUNIT!r})"
        return [gpu_check.Step("cuda_tests", ["-c", write_junit], 30),
                gpu_check.Step("bench_dream", ["-c", "print('{\"runs\": [1]}')"], 30),
                gpu_check.Step("bench_live", ["-c", "import sys; print('no json'); sys.exit(3)"], 30)]

    monkeypatch.setattr(gpu_check, "plan", plan)
    out = tmp_path / "summary.json"
    assert gpu_check.main(["--out", str(out)]) == 1
    summary = json.loads(out.read_text())
    assert summary["steps"]["bench_dream"]["result"] == {"runs": [1]}
    assert summary["steps"]["bench_dream"]["exit_code"] == 0
    assert summary["steps"]["bench_live"]["exit_code"] == 3 and "no json" in summary["steps"]["bench_live"]["output_tail"]
    tests = summary["tests"]
    assert (tests["passed"], tests["failed"], tests["skipped"]) == (1, 1, 1)
    assert tests["failed_tests"] == ["tests.test_cuda::test_b"]
    assert summary["ok"] is False and "device" in summary
