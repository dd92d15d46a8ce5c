"""Archives of videos: one folder per video and an index, locally or as Ray tasks (local mode, one
Ray session for the module), resumable, with failures listed; and analyze's bad input."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from test_report import write_cut_video
from toolbox.cli import main
from toolbox.config import load_config
from toolbox.jobs.analyze import analyze
from toolbox.jobs.batch import KILL_ONCE_ENV, analyze_archive, archive_sources

FPS, SECONDS = 10, 0.5  # 10 frames per video; segments of 0.5 s split each in two


@pytest.fixture(scope="module")
def archive(tmp_path_factory, cat_bgr, coffee_bgr):
    folder = tmp_path_factory.mktemp("archive")
    (folder / "day2").mkdir()
    write_cut_video(folder / "a.mp4", cat_bgr, coffee_bgr, FPS, SECONDS, seed=1)
    write_cut_video(folder / "b.mp4", coffee_bgr, cat_bgr, FPS, SECONDS, seed=2)
    write_cut_video(folder / "day2" / "a.mp4", cat_bgr, cat_bgr, FPS, SECONDS, seed=3)
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Ray tasks run with one thread; the reference runs with as many, so the floats are the same."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sequential(archive, tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("sequential")
    config = load_config()
    for name, path in (("a", "a.mp4"), ("b", "b.mp4"), ("day2__a", "day2/a.mp4")):
        analyze(str(archive / path), out / name, config, progress=False)
    return out


@pytest.fixture(scope="module")
def ray_session():
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("the Ray tests need ray (pip install -e '.[test]')")
        pytest.skip("ray is not installed (pip install 'deepvis[ray]')")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def on_ray(archive, tmp_path_factory, ray_session, one_thread):
    out = tmp_path_factory.mktemp("ray") / "out"
    marker = tmp_path_factory.mktemp("fault") / "killed"
    os.environ[KILL_ONCE_ENV] = str(marker)  # inherited by the local Ray's workers
    try:
        outcomes = analyze_archive(str(archive), archive_sources(str(archive)), out, load_config(),
                                   ray_address="local", workers=2, threads=1, segment_seconds=SECONDS, progress=False)
    finally:
        del os.environ[KILL_ONCE_ENV]
    return out, outcomes, marker


def comparable_summary(folder) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("timing")
    return summary


def test_archive_sources_take_a_glob_a_folder_or_a_list(archive, tmp_path):
    every = [str(archive / "a.mp4"), str(archive / "b.mp4"), str(archive / "day2" / "a.mp4")]
    assert archive_sources(str(archive)) == every
    assert archive_sources(str(archive / "**" / "*.mp4")) == every
    listing = tmp_path / "videos.txt"
    listing.write_text(f"# two of them\n{archive / 'b.mp4'}\n\n{archive / 'a.mp4'}\n")
    assert archive_sources(str(listing)) == [str(archive / "b.mp4"), str(archive / "a.mp4")]
    assert archive_sources(str(archive / "a.mp4")) is None  # one video is not an archive


def test_ray_outputs_equal_the_sequential_run_except_timings(on_ray, sequential):
    out, outcomes, _ = on_ray
    assert [(o.folder, o.status) for o in outcomes] == [("a", "done"), ("b", "done"), ("day2__a", "done")]
    for name in ("a", "b", "day2__a"):
        ours, reference = out / name, sequential / name
        assert comparable_summary(ours) == comparable_summary(reference)
        assert json.loads((ours / "summary.json").read_text())["timing"]["segments"] == 2
        for file in ("frames.jsonl", "top_patches.json", "report/frames.csv"):
            assert (ours / file).read_text() == (reference / file).read_text(), file
        with np.load(ours / "series.npz") as a, np.load(reference / "series.npz") as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
        assert sorted(p.relative_to(ours) for p in ours.rglob("*")) == sorted(
            p.relative_to(reference) for p in reference.rglob("*"))


def test_a_killed_worker_is_retried_and_no_partial_folder_remains(on_ray):
    out, outcomes, marker = on_ray
    assert marker.is_file(), "no worker was killed"
    assert all(o.status == "done" for o in outcomes)
    leftovers = [p.name for p in out.rglob("*") if ".part" in p.name]
    assert leftovers == []


def test_index_links_every_report_with_a_summary_line(on_ray):
    out, _, _ = on_ray
    index = (out / "index.html").read_text()
    for name in ("a", "b", "day2__a"):
        assert f'href="{name}/report.html"' in index
    assert "Egyptian cat" in index and "espresso" in index
    assert "analysed 0.0–1.0 s of 1.0 s, 10 frames, 2 shots" in index


def test_one_video_on_ray_equals_its_sequential_run(on_ray, sequential, archive, tmp_path):
    out = tmp_path / "one"
    assert main(["analyze", str(archive / "b.mp4"), "--out", str(out), "--ray", "--threads", "1",
                 "--segment-seconds", str(SECONDS), "--quiet"]) == 0
    assert comparable_summary(out) == comparable_summary(sequential / "b")
    assert (out / "frames.jsonl").read_text() == (sequential / "b" / "frames.jsonl").read_text()
    assert json.loads((out / "summary.json").read_text())["timing"]["segments"] == 2


def test_a_rerun_skips_the_videos_already_done(on_ray, archive):
    out, _, _ = on_ray
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    started = time.perf_counter()
    outcomes = analyze_archive(str(archive), archive_sources(str(archive)), out, load_config(),
                               ray_address="local", workers=2, threads=1, segment_seconds=SECONDS, progress=False)
    assert [o.status for o in outcomes] == ["skipped"] * 3
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")} == stamps
    assert time.perf_counter() - started < 10


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_glob_that_matches_nothing_is_one_line_exit_2(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nothing" / "*.mp4"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "matches no files" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_one_corrupt_video_is_listed_and_the_others_go_on(archive, tmp_path, capsys, one_thread):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.mp4").write_bytes((archive / "a.mp4").read_bytes())
    (folder / "broken.mp4").write_bytes((archive / "b.mp4").read_bytes()[:2000])
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--quiet", "--max-frames", "3"]) == 2
    err = one_line_error(capsys)
    assert "broken.mp4" in err and "index.html" in err
    assert (out / "good" / "report.html").is_file() and not (out / "broken").exists()
    index = json.loads((out / "index.json").read_text())["videos"]
    assert [(v["folder"], v["status"]) for v in index] == [("broken", "failed"), ("good", "done")]
    assert "cannot decode" in index[0]["error"] and "cannot decode" in (out / "index.html").read_text()


def test_the_index_shows_the_span_analysed_and_the_full_length(archive, tmp_path, one_thread):
    """10 frames at 10 fps, every 2nd, at most 2: frames 0 and 2 analysed, 0.0-0.4 s of 1.0 s."""
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "a.mp4").write_bytes((archive / "a.mp4").read_bytes())
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--quiet", "--every", "2", "--max-frames", "2"]) == 0
    summary = json.loads((out / "a" / "summary.json").read_text())
    assert summary["analysed_s"] == [0.0, 0.4] and summary["duration_s"] == 1.0 and summary["source_frames"] == 10
    video, = json.loads((out / "index.json").read_text())["videos"]
    assert video["line"].startswith("analysed 0.0–0.4 s of 1.0 s, 2 frames, ")
    assert video["line"] in (out / "index.html").read_text()
    assert "<td>analysed</td><td>0.00–0.40 s of 1.00 s</td>" in (out / "a" / "report.html").read_text()


@pytest.mark.parametrize("extra,expected", [
    ({"analysed_s": [0.0, 12.3], "source_frames": None, "duration_s": 12.3},
     "analysed 0.0–12.3 s (full length unknown), 123 frames, 1 shot: espresso"),
    ({"analysed_s": [0.0, 12.3], "source_frames": 369, "duration_s": 12.3},
     "analysed 0.0–12.3 s of 12.3 s, 123 frames, 1 shot: espresso"),
    ({"duration_s": 12.3}, "12.3 s, 123 frames analysed, 1 shot: espresso"),  # written before analysed_s
])
def test_summary_line_labels_the_span_and_the_full_length_when_known(tmp_path, extra, expected):
    from toolbox.jobs.batch import summary_line

    summary = {"frames_processed": 123, "shots": [{"top1": "espresso"}], **extra}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert summary_line(tmp_path) == expected


def test_an_unreachable_ray_address_is_one_line_exit_2(archive, tmp_path, capsys):
    started = time.perf_counter()
    assert main(["analyze", str(archive / "a.mp4"), "--out", str(tmp_path / "out"), "--ray", "127.0.0.1:1",
                 "--quiet"]) == 2
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in one_line_error(capsys)
    assert time.perf_counter() - started < 30 and not (tmp_path / "out").exists()


def test_without_ray_installed_the_ray_option_says_how_to_install_it(archive, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    assert main(["analyze", str(archive / "a.mp4"), "--out", str(tmp_path / "out"), "--ray"]) == 2
    assert "pip install 'deepvis[ray]'" in one_line_error(capsys)


def test_another_runs_files_are_replaced_as_a_set_never_mixed(archive, tmp_path, one_thread):
    out = tmp_path / "out"
    args = ["analyze", str(archive / "a.mp4"), "--out", str(out), "--quiet", "--max-frames", "2"]
    assert main([*args, "--layer", "_blocks.1"]) == 0
    assert main([*args, "--layer", "_blocks.2"]) == 0
    names = {p.name for p in (out / "top_patches").iterdir()}
    assert names and all(n.startswith("_blocks.2_") for n in names)
    manifest = json.loads((out / ".deepvis-outputs.json").read_text())
    assert sorted(manifest["files"]) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                                               if p.is_file() and p.name != ".deepvis-outputs.json")


def test_metrics_on_an_archive_are_recorded_in_every_video(archive, tmp_path, one_thread):
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes((archive / name).read_bytes())
    out = tmp_path / "out"
    assert main(["analyze", str(folder), "--out", str(out), "--quiet", "--max-frames", "2", "--saliency", "gradcam",
                 "--metrics", "deletion", "--metrics-every", "1"]) == 0
    for name in ("a", "b"):
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["saliency_metrics"]["frames"] == 2
        assert 0.0 <= summary["saliency_metrics"]["mean"]["deletion"] <= 1.0
