"""deepvis invert / texture / style end to end: outputs exist, have the right shape, differ from the input."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from toolbox.cli import main

STYLE = Path(__file__).resolve().parents[1] / "toolbox" / "styles" / "strokes.png"
FAST = ["--steps", "2", "--quiet"]


@pytest.fixture()
def cat_file(tmp_path, cat_bgr):
    path = tmp_path / "cat.png"
    cv2.imwrite(str(path), cv2.resize(cat_bgr, (64, 48), interpolation=cv2.INTER_AREA))
    return path


def test_texture_writes_a_square_texture(tmp_path):
    out = tmp_path / "tex.png"
    assert main(["texture", str(STYLE), "--out", str(out), "--size", "48", *FAST]) == 0
    assert cv2.imread(str(out)).shape == (48, 48, 3)


def test_style_image_changes_it_and_says_when_the_sizes_differ_much(tmp_path, cat_file, capsys):
    big = tmp_path / "big-style.png"
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(STYLE)), (512, 512)))
    out = tmp_path / "styled.png"
    assert main(["style", str(cat_file), "--style", str(big), "--out", str(out), *FAST]) == 0
    styled, original = cv2.imread(str(out)), cv2.imread(str(cat_file))
    assert styled.shape == original.shape and np.abs(styled.astype(int) - original).mean() > 1.0
    assert "differ much in size" in capsys.readouterr().out


def test_style_folder_and_video(tmp_path, cat_file):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), cv2.imread(str(cat_file)))
    out = tmp_path / "styled"
    assert main(["style", str(folder), "--style", str(STYLE), "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a-style.png", "b-style.png"]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(3):
        writer.write(np.ascontiguousarray(np.roll(cv2.imread(str(cat_file)), 2 * i, axis=1)))
    writer.release()
    target = tmp_path / "clip-style.avi"
    assert main(["style", str(video), "--style", str(STYLE), "--out", str(target), "--video-steps", "1", *FAST]) == 0
    cap = cv2.VideoCapture(str(target))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 3


def test_invert_all_layers_is_one_labelled_strip(tmp_path, cat_file, lite0):
    out = tmp_path / "strip.png"
    assert main(["invert", str(cat_file), "--layers", "all", "--size", "32", "--out", str(out), *FAST]) == 0
    strip = cv2.imread(str(out))
    tiles = len(lite0.layers) + 2  # the input, every visualisable layer, the logits
    assert strip.shape[1] == tiles * (32 + 6) + 6  # one row: tile 32 px, gap 6 px
    assert strip.shape[0] < 3 * strip.shape[1] // tiles  # one row, with a title and captions
