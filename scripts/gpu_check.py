"""One-shot GPU check (run through scripts/gpu_check.sh): the CUDA tests, then the GPU benchmarks,
then ONE JSON summary. Sized for one H100/H200: every step has a time limit and the whole run
stays under TOTAL_BUDGET_S (7 minutes), well inside 8.

Steps, in order:
  cuda_tests      pytest -m cuda (tests/test_cuda.py and any other test marked cuda)
  bench_dream     scripts/bench_dream.py --device cuda --sizes 640x480 1920x1080
  bench_live      scripts/bench_live.py --device cuda (needs an X display or Xvfb; without one the
                  window-less scripts/bench_pipeline.py --device cuda runs instead, and says so)
  bench_saliency  scripts/bench_saliency.py --device cuda

The summary (stdout and --out, default gpu-check.json) holds the device, each step's command,
exit code, seconds and parsed JSON output (or its last lines when it printed none), the test
counts with the names of failed and skipped tests, and ``ok``: every step exited 0 and no cuda
test failed or skipped. Exit code 0 when ok, 1 otherwise.

--dry-run prints the plan as JSON and checks, without running anything and without a GPU, that
each benchmark script declares the options it will be given and that tests marked cuda exist.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOTAL_BUDGET_S = 420


@dataclass
class Step:
    name: str
    args: list[str]  # after the Python interpreter
    limit_s: int
    note: str = ""
    files: list[str] = field(default_factory=list)  # scripts whose options are checked in --dry-run


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY")) or shutil.which("Xvfb") is not None


def plan(junit: str) -> list[Step]:
    live = Step("bench_live", ["scripts/bench_live.py", "--device", "cuda", "--threads", "1", "--frames", "300"], 60,
                files=["scripts/bench_live.py"])
    if not display_available():
        live = Step("bench_live", ["scripts/bench_pipeline.py", "--device", "cuda", "--frames", "120"], 60,
                    note="no X display and no Xvfb: the window-less pipeline benchmark ran instead of bench_live",
                    files=["scripts/bench_pipeline.py"])
    marked = [str(p.relative_to(ROOT)) for p in cuda_test_files()] or ["tests"]
    return [
        Step("cuda_tests", ["-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-rs",
                            f"--junitxml={junit}", *marked], 150),
        Step("bench_dream", ["scripts/bench_dream.py", "--device", "cuda", "--sizes", "640x480", "1920x1080"], 120,
             files=["scripts/bench_dream.py"]),
        live,
        Step("bench_saliency", ["scripts/bench_saliency.py", "--device", "cuda"], 90, files=["scripts/bench_saliency.py"]),
    ]


def cuda_test_files() -> list[Path]:
    """Test files that mark tests with pytest.mark.cuda (only these are collected: faster)."""
    return [p for p in sorted((ROOT / "tests").glob("test_*.py")) if "pytest.mark.cuda" in p.read_text()]


def declared_options(script: Path) -> set[str]:
    """Every "--option" string passed to an add_argument call in the script's source."""
    options = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            options.update(a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--"))
    return options


def check_plan(steps: list[Step]) -> list[str]:
    """Problems that would make a step fail before it measures anything (empty when none)."""
    problems = []
    for step in steps:
        for name in step.files:
            script = ROOT / name
            if not script.is_file():
                problems.append(f"{step.name}: {name} is missing")
                continue
            missing = sorted({a for a in step.args if a.startswith("--")} - declared_options(script))
            if missing:
                problems.append(f"{step.name}: {name} has no option {', '.join(missing)}")
    if not cuda_test_files():
        problems.append("cuda_tests: no test file marks tests with pytest.mark.cuda")
    return problems


def json_output(text: str):
    """The JSON a benchmark printed: one document, or one object per line (a list); None if none."""
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    start = text.find("{")
    if start >= 0:  # a document after other output
        try:
            return json.loads(text[start:])
        except ValueError:
            pass
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows or None


def test_counts(junit: Path) -> dict:
    """Counts and the failed/skipped test names from pytest's JUnit XML report."""
    if not junit.is_file():
        return {"report": "missing"}
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failed_tests": [], "skipped_tests": []}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            key = "failed" if case.find("failure") is not None else "errors"
            counts[key] += 1
            counts["failed_tests"].append(name)
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
            counts["skipped_tests"].append(f"{name}: {case.find('skipped').get('message', '')}")
        else:
            counts["passed"] += 1
    return counts


def run_step(step: Step, python: str, limit_s: float) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    try:
        done = subprocess.run([python, *step.args], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=max(1.0, limit_s))
        code, out, err, timed_out = done.returncode, done.stdout, done.stderr, False
    except subprocess.TimeoutExpired as exc:
        code, timed_out = None, True
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
    row = {"command": " ".join([Path(python).name, *step.args]), "exit_code": code, "timed_out": timed_out,
           "seconds": round(time.perf_counter() - start, 1), "limit_s": round(limit_s)}
    if step.note:
        row["note"] = step.note
    parsed = None if step.name == "cuda_tests" else json_output(out)
    if parsed is not None:
        row["result"] = parsed
    if parsed is None or code != 0:
        row["output_tail"] = (out + err)[-3000:]
    return row


def device_info() -> dict:
    try:
        import torch
    except ImportError:
        return {"torch": None}
    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", count=torch.cuda.device_count())
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and check it; run nothing")
    parser.add_argument("--out", default="gpu-check.json", help="summary file (default gpu-check.json)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the steps (default: this one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deepvis-gpu-check-") as tmp:
        junit = Path(tmp) / "cuda-tests.xml"
        steps = plan(str(junit))
        if args.dry_run:
            problems = check_plan(steps)
            print(json.dumps({"dry_run": True, "budget_s": TOTAL_BUDGET_S, "problems": problems,
                              "steps": [{"name": s.name, "command": " ".join(["python", *s.args]), "limit_s": s.limit_s,
                                         **({"note": s.note} if s.note else {})} for s in steps]}, indent=2))
            return 1 if problems else 0
        started = time.perf_counter()
        summary = {"check": "gpu", "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "device": device_info(), "steps": {}}
        for step in steps:
            left = TOTAL_BUDGET_S - (time.perf_counter() - started)
            if left < 10:
                summary["steps"][step.name] = {"skipped": f"the {TOTAL_BUDGET_S} s budget is spent"}
                continue
            summary["steps"][step.name] = run_step(step, args.python, min(step.limit_s, left))
            print(f"gpu_check: {step.name} exit {summary['steps'][step.name]['exit_code']} "
                  f"in {summary['steps'][step.name]['seconds']} s", file=sys.stderr, flush=True)
        summary["tests"] = test_counts(junit)
    tests = summary["tests"]
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    summary["ok"] = (all(row.get("exit_code") == 0 for row in summary["steps"].values())
                     and tests.get("failed") == 0 and tests.get("errors") == 0 and tests.get("skipped") == 0
                     and tests.get("passed", 0) > 0)
    text = json.dumps(summary, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
