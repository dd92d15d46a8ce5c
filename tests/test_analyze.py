"""deepvis analyze and inspect end to end, and the CLI's handling of bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest
import torch

from toolbox.cli import main
from toolbox.config import load_config
from toolbox.jobs.analyze import analyze
from toolbox.models.capture import has_hooks
from toolbox.sources import demo_clip_path, open_source

EVERY = 8


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    out = tmp_path_factory.mktemp("analyze")
    config = load_config(overrides={"analyze.every": EVERY})
    return analyze("demo", out, config, progress=False), config


def test_analyze_writes_a_readable_video_with_one_frame_per_processed_frame(analyzed):
    outputs, config = analyzed
    with open_source("demo") as source:
        expected = (source.frame_count + EVERY - 1) // EVERY
    video = cv2.VideoCapture(str(outputs.video))
    count = 0
    while True:
        ok, image = video.read()
        if not ok:
            break
        assert image.shape == (config.layout.height, config.layout.width, 3)
        count += 1
    assert count == expected


def test_analyze_records_agree_with_a_direct_forward(analyzed, lite0):
    outputs, _ = analyzed
    records = [json.loads(line) for line in outputs.frames.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(0, EVERY * len(records), EVERY))
    frames = {f.index: f for f in open_source("demo") if f.index % EVERY == 0}
    for record in records:
        assert len(record["top5"]) == 5 and record["top5"][0]["probability"] >= record["top5"][1]["probability"]
        assert set(record["layer_means"]) == set(lite0.layers)
        assert len(record["top_channels"]) == 5
        with torch.inference_mode():
            logits = lite0.module(lite0.preprocess(frames[record["index"]].image))
        assert record["top5"][0]["index"] == int(logits.argmax())
    summary = json.loads(outputs.summary.read_text())
    assert summary["frames_processed"] == len(records)
    assert sum(summary["top1_counts"].values()) == len(records)
    assert not has_hooks(lite0.module)


def test_inspect_writes_predictions_filters_and_one_sheet_per_layer(tmp_path, cat_bgr, lite0):
    image = tmp_path / "cat.png"
    cv2.imwrite(str(image), cat_bgr)
    assert main(["inspect", str(image), "--out", str(tmp_path / "out")]) == 0
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert predictions["predictions"][0]["label"] == "Egyptian cat"
    sheets = sorted((tmp_path / "out" / "features").glob("*.png"))
    assert len(sheets) == len(lite0.layers)
    filters = cv2.imread(str(tmp_path / "out" / "filters.png"))
    assert filters is not None and filters.shape[0] > 100
    saliency = sorted((tmp_path / "out" / "saliency").glob("*.png"))
    for picture in [filters, cv2.imread(str(sheets[0])), cv2.imread(str(saliency[0]))]:
        assert has_title_strip(picture)


def has_title_strip(image) -> bool:
    """A dark strip along the top with light text in it: the picture says what it shows."""
    strip = image[:16]
    return bool((strip < 60).mean() > 0.7 and (strip > 150).any())


def corrupt_video(tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(demo_clip_path().read_bytes()[:3000])
    return path


@pytest.mark.parametrize("case", ["missing file", "corrupt video", "unknown model", "unknown layer", "bad config key"])
def test_bad_input_exits_nonzero_with_one_line_and_writes_nothing(case, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["analyze", "demo", "--out", str(out), "--max-frames", "2", "--quiet"]
    if case == "missing file":
        args[1] = str(tmp_path / "nope.mp4")
    elif case == "corrupt video":
        args[1] = str(corrupt_video(tmp_path))
    elif case == "unknown model":
        args += ["--model", "nosuchnet"]
    elif case == "unknown layer":
        args += ["--layer", "_blocks.99"]
    else:
        config = tmp_path / "bad.yaml"
        config.write_text("display:\n  colourmap: jet\n")
        args += ["--config", str(config)]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepvis: error: ") and len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))


def test_python_dash_m_toolbox_is_the_cli():
    result = subprocess.run([sys.executable, "-m", "toolbox", "layers"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "_blocks.15" in result.stdout and "1280" in result.stdout


def test_interrupted_analyze_leaves_no_file_under_a_final_name(tmp_path, monkeypatch):
    import toolbox.jobs.analyze as job

    calls = {"n": 0}
    real = job.render_window

    def interrupt_on_third_frame(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(job, "render_window", interrupt_on_third_frame)
    with pytest.raises(KeyboardInterrupt):
        analyze("demo", tmp_path / "out", load_config(), progress=False)
    assert list((tmp_path / "out").glob("*")) == []  # neither final files nor temporaries
