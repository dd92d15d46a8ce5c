"""Output files: sets that appear together or not at all, checked videos, exclusive names, honest
file modes, and what a killed, interrupted, full or size-limited run leaves (nothing)."""
from __future__ import annotations

import errno
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from test_bad_inputs import FAULTS
from toolbox.app.recorder import Recorder
from toolbox.app.snapshot import snapshot_paths, write_snapshot
from toolbox.atomic import (atomic_path, part_name, publish_unique, remove_stale_parts, write_json,
                            write_unique_image)
from toolbox.cli import main
from toolbox.errors import DeepvisError
from toolbox.output_set import MANIFEST, OutputSet
from toolbox.render.layout import Rect
from toolbox.video_file import VideoOutput, count_readable_frames

DEAD_PID = 2**22 + 12345  # above Linux's pid_max (4194304): never a running process


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# --- output sets ------------------------------------------------------------------------------------
def test_an_output_set_appears_only_when_committed_and_replaces_the_earlier_set_as_a_whole(tmp_path):
    out = tmp_path / "out"
    with OutputSet(out, "test") as files:
        files.write_text("a.txt", "first a")
        files.write_json("sub/b.json", {"run": 1})
        assert not out.exists()  # nothing under the final name while the job runs
    assert _visible(out) == ["a.txt", "sub"] and json.loads((out / "sub" / "b.json").read_text()) == {"run": 1}
    assert json.loads((out / MANIFEST).read_text())["files"] == ["a.txt", "sub/b.json"]
    with OutputSet(out, "test") as files:
        files.write_text("c.txt", "second c")
    assert _visible(out) == ["c.txt"]  # the first run's a.txt and sub/ went with their set
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or old folders left


def test_a_failed_run_leaves_the_earlier_set_untouched_and_no_staging(tmp_path):
    out = tmp_path / "out"
    with OutputSet(out, "test") as files:
        files.write_text("a.txt", "first")
    before = _tree(out)
    with pytest.raises(RuntimeError):
        with OutputSet(out, "test") as files:
            files.write_text("a.txt", "second, half done")
            raise RuntimeError("the job failed")
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_early_failure_leaves_no_empty_folders_not_even_parents(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with OutputSet(tmp_path / "new" / "deeper" / "out", "test"):
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_an_output_set_refuses_a_folder_of_other_files_and_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DeepvisError, match="already holds files deepvis did not write .notes.txt"):
        OutputSet(tmp_path, "test")
    with pytest.raises(DeepvisError, match="is a file, not a folder"):
        OutputSet(tmp_path / "notes.txt", "test")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_stale_temporaries_of_dead_runs_are_removed_and_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    stale_dir = tmp_path / f".out.{DEAD_PID}-0badf00d.part"
    stale_dir.mkdir()
    (stale_dir / "annotated.mp4").write_bytes(b"cut off")
    stale_old = tmp_path / f".out.{DEAD_PID}-0badf00d.old.part"
    stale_old.mkdir()
    live_dir = tmp_path / f".out.{os.getppid()}-0badf00d.part"  # pytest's parent: alive
    live_dir.mkdir()
    with OutputSet(out, "test") as files:
        files.write_text("a.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live_dir.name])
    stale_file = tmp_path / f".summary.{DEAD_PID}-0badf00d.part.json"
    stale_file.write_text("{")
    other = tmp_path / f".summary2.{DEAD_PID}-0badf00d.part.json"  # another file's temporary: not ours to judge
    other.write_text("{")
    write_json(tmp_path / "summary.json", {"ok": True})
    assert not stale_file.exists() and other.exists()
    assert remove_stale_parts(tmp_path / "summary2.json") == [other]


@pytest.mark.parametrize("umask,file_mode,folder_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_honour_the_umask(tmp_path, umask, file_mode, folder_mode):
    previous = os.umask(umask)
    try:
        single = write_json(tmp_path / "single.json", {})
        with atomic_path(tmp_path / "video.mp4") as tmp:
            pass  # a writer that reuses the temporary as created
        with OutputSet(tmp_path / "set", "test") as files:
            files.write_text("a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(single.stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "video.mp4").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "set" / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "set").stat().st_mode) == folder_mode


def test_temporary_names_are_unique_per_call_and_keep_the_suffix(tmp_path):
    names = {part_name(tmp_path / "annotated.mp4") for _ in range(50)}
    assert len(names) == 50 and all(n.suffix == ".mp4" and n.name.startswith(".annotated.") for n in names)


# --- exclusive names: two sessions in one folder ----------------------------------------------------
def test_publishing_from_many_threads_at_once_gives_distinct_numbers_and_never_overwrites(tmp_path):
    results: list[Path] = []

    def publish(i: int) -> None:
        tmp = part_name(tmp_path / "shot.png")
        tmp.write_bytes(f"shot {i}".encode())
        results.append(publish_unique(tmp, tmp_path, "shot", ".png"))

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in results) == [f"shot-{n:04d}.png" for n in range(16)]
    assert sorted(p.read_text() for p in results) == sorted(f"shot {i}" for i in range(16))
    assert write_unique_image(tmp_path, "shot", ".png", np.zeros((4, 4, 3), np.uint8)).name == "shot-0016.png"


def test_two_sessions_snapshotting_with_the_same_number_keep_both_snapshots(tmp_path):
    panes = {"input": Rect(0, 0, 4, 4)}
    first, second = snapshot_paths(tmp_path, panes), snapshot_paths(tmp_path, panes)  # both chose 0000
    assert first.number == second.number == 0
    a = write_snapshot(first, np.full((8, 8, 3), 10, np.uint8), panes, {"session": "a"})
    b = write_snapshot(second, np.full((8, 8, 3), 200, np.uint8), panes, {"session": "b"})
    assert (a.number, b.number) == (0, 1)
    assert json.loads(a.state.read_text())["session"] == "a" and json.loads(b.state.read_text())["session"] == "b"
    assert cv2.imread(str(b.window))[0, 0, 0] == 200 and cv2.imread(str(b.panes["input"]))[0, 0, 0] == 200
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_two_recorders_in_one_folder_write_two_complete_recordings(tmp_path):
    recorders = [Recorder(tmp_path, (64, 48), fps=50.0) for _ in range(2)]
    assert recorders[0]._tmp != recorders[1]._tmp  # unique temporaries (were both .recording-0000.part.mp4)
    for r in recorders:
        r.start()
    for i in range(4):
        for k, r in enumerate(recorders):
            r.offer(np.full((48, 64, 3), 60 * k + 10 * i, np.uint8))
        time.sleep(0.03)
    paths = [r.finish() for r in recorders]
    assert sorted(p.name for p in paths) == ["recording-0000.mp4", "recording-0001.mp4"]
    assert all(count_readable_frames(p) == r.frames > 0 for p, r in zip(paths, recorders))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- checked videos -------------------------------------------------------------------------------
def test_a_recording_the_disk_swallowed_is_an_error_and_leaves_no_file(tmp_path, monkeypatch):
    FAULTS["silent_video_writer"](monkeypatch)  # cv2.VideoWriter on a full disk: silent
    recorder = Recorder(tmp_path, (64, 48), fps=50.0)
    recorder.start()
    recorder.offer(np.zeros((48, 64, 3), np.uint8))
    time.sleep(0.05)
    with pytest.raises(DeepvisError, match=r"cannot write video .*recording.*\(0 of \d+ frames readable\)"):
        recorder.finish()
    assert list(tmp_path.iterdir()) == []


def test_a_video_cut_off_by_the_file_size_limit_is_reported_with_the_reason(tmp_path):
    code = (f"import signal, numpy as np\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"from toolbox.video_file import VideoOutput\n"
            f"v = VideoOutput({str(tmp_path / 'v.mp4')!r}, 30, (320, 240))\n"
            f"for i in range(10): v.write(np.random.default_rng(i).integers(0, 255, (240, 320, 3), np.uint8))\n"
            f"v.finish()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000)))
    assert result.returncode != 0
    assert "file size limit was reached (ulimit -f)" in result.stderr and "of 10 frames readable" in result.stderr


def test_a_complete_video_passes_the_check(tmp_path):
    video = VideoOutput(tmp_path / "v.avi", 10.0, (32, 24))
    for i in range(3):
        video.write(np.full((24, 32, 3), 80 * i, np.uint8))
    assert video.finish() == tmp_path / "v.avi" and count_readable_frames(tmp_path / "v.avi") == 3


# --- whole commands -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(tmp_path_factory, cat_bgr) -> Path:
    """A folder: two small photos and, between them, a text file named .jpg."""
    folder = tmp_path_factory.mktemp("images")
    small = cv2.resize(cat_bgr, (96, 64))
    cv2.imwrite(str(folder / "a.png"), small)
    (folder / "b.jpg").write_text("not a picture")
    cv2.imwrite(str(folder / "c.png"), np.ascontiguousarray(small[:, ::-1]))
    return folder


def _deepvis(*args: str, limit_bytes: int | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    limit = None if limit_bytes is None else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes)))
    return subprocess.Popen([sys.executable, "-m", "toolbox", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=limit, **kwargs)


def _analyze_writing(out: Path) -> subprocess.Popen:
    """``deepvis analyze demo --out out`` in a subprocess, returned once it is writing its outputs."""
    process = _deepvis("analyze", "demo", "--out", str(out), "--quiet")
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".part") for p in out.parent.iterdir()):  # its staging folder is there
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    time.sleep(0.5)  # a few frames in
    return process


def test_analyze_skips_a_bad_file_of_a_folder_warns_and_lists_it(images, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(images), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"deepvis: warning: skipped {images / 'b.jpg'}: cannot decode image" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == 2 and [s["file"] for s in summary["skipped"]] == [str(images / "b.jpg")]
    assert [json.loads(line)["index"] for line in (out / "frames.jsonl").read_text().splitlines()] == [0, 2]
    assert summary["random_weights"] is False and summary["video"]["frames"] == 2


def test_analyze_marks_random_weights_in_the_summary(images, tmp_path):
    out = tmp_path / "out"
    assert main(["analyze", str(images / "a.png"), "--out", str(out), "--weights", "none", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] is True and summary["weights"] == "random"


def test_dream_skips_a_bad_file_of_a_folder_and_says_so(images, tmp_path, capsys):
    out = tmp_path / "dreams"
    assert main(["dream", str(images), "--out", str(out), "--layers", "_blocks.3", "--octaves", "1", "--steps", "1",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert _visible(out) == ["a-dream.png", "c-dream.png"]
    assert f"skipped 1 unreadable: {images / 'b.jpg'}" in captured.out and "warning: skipped" in captured.err


def test_interrupting_analyze_after_its_video_is_complete_keeps_the_earlier_run_whole(images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["analyze", str(images / "a.png"), "--out", str(out), "--quiet"]) == 0
    earlier = _tree(out)
    real_finish = VideoOutput.finish

    def finish_then_interrupt(self):
        real_finish(self)  # the new video is complete ...
        raise KeyboardInterrupt  # ... and the user presses Ctrl-C

    monkeypatch.setattr(VideoOutput, "finish", finish_then_interrupt)
    assert main(["analyze", str(images / "c.png"), "--out", str(out), "--quiet"]) == 130
    assert _tree(out) == earlier  # not the new video beside the old summary: the old set, whole
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_sigterm_cleans_up_like_ctrl_c_and_exits_143(tmp_path):
    out = tmp_path / "out"
    process = _analyze_writing(out)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "deepvis: terminated"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["analyze", "bigbuckbunny", "--max-frames", "4"],  # the video passes the limit
    ["inspect", "{a}"],  # the PNGs pass the limit
])
def test_a_file_size_limit_is_one_line_exit_2_and_no_outputs(command, images, tmp_path):
    out = tmp_path / "out"
    args = [a.replace("{a}", str(images / "a.png")) for a in command]
    process = _deepvis(*args, "--out", str(out), *(["--quiet"] if args[0] == "analyze" else []), limit_bytes=100 * 1024)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "the file size limit was reached (ulimit -f)" in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_the_video_is_one_line(images, tmp_path, monkeypatch, capsys):
    """ENOSPC from the writer itself (not cv2's silence): the job's own writes raise it."""
    import toolbox.output_set

    real = toolbox.output_set.OutputSet.write_bytes

    def full(self, name, data):
        if name == "summary.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, name, data)

    monkeypatch.setattr(toolbox.output_set.OutputSet, "write_bytes", full)
    assert main(["analyze", str(images / "a.png"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"deepvis: error: cannot write {tmp_path / 'out'}: the disk is full: " \
                                              "free some space or choose another --out"
    assert list(tmp_path.iterdir()) == []


def test_an_output_set_never_replaces_another_jobs_outputs(tmp_path):
    with OutputSet(tmp_path / "out", "analyze") as files:
        files.write_text("summary.json", "{}")
    with pytest.raises(DeepvisError, match="holds the outputs of deepvis analyze"):
        OutputSet(tmp_path / "out", "inspect")
    assert _visible(tmp_path / "out") == ["summary.json"]


def test_the_run_after_a_killed_one_removes_what_it_left(images, tmp_path):
    out = tmp_path / "out"
    process = _analyze_writing(out)
    process.kill()  # SIGKILL: no cleanup at all
    process.communicate(timeout=60)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]  # the killed run's staging folder
    assert main(["analyze", str(images / "a.png"), "--out", str(out), "--quiet"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_without_an_atomic_exchange_the_earlier_set_is_still_replaced_whole(tmp_path, monkeypatch):
    import toolbox.output_set

    monkeypatch.setattr(toolbox.output_set, "_exchange", lambda a, b: False)  # e.g. not Linux, or no renameat2
    for run in ("first", "second"):
        with OutputSet(tmp_path / "out", "test") as files:
            files.write_text(f"{run}.txt", run)
    assert _visible(tmp_path / "out") == ["second.txt"] and [p.name for p in tmp_path.iterdir()] == ["out"]
