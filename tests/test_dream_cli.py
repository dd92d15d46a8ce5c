"""deepvis dream on an image, a folder and a video: outputs exist, are dreams, and errors are one line."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from toolbox.cli import main

FAST = ["--layers", "_blocks.3", "--octaves", "2", "--steps", "2", "--quiet"]


@pytest.fixture()
def cat_file(tmp_path, cat_bgr):
    path = tmp_path / "cat.png"
    cv2.imwrite(str(path), cv2.resize(cat_bgr, (96, 64), interpolation=cv2.INTER_AREA))
    return path


def test_dream_image_writes_a_changed_image(tmp_path, cat_file, capsys):
    out = tmp_path / "out" / "dream.png"
    assert main(["dream", str(cat_file), "--out", str(out), *FAST]) == 0
    dreamed, original = cv2.imread(str(out)), cv2.imread(str(cat_file))
    assert dreamed.shape == original.shape
    assert np.abs(dreamed.astype(int) - original).mean() > 1.0
    assert not [p for p in out.parent.iterdir() if ".part" in p.name]  # atomic: no leftovers


def test_dream_folder_writes_one_dream_per_image(tmp_path, cat_file):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), cv2.imread(str(cat_file)))
    out = tmp_path / "dreams"
    assert main(["dream", str(folder), "--out", str(out), "--preset", "tf-tutorial", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["a-dream.png", "b-dream.png"]


def test_dream_video_writes_every_frame(tmp_path, cat_file):
    video = tmp_path / "clip.avi"
    frame = cv2.imread(str(cat_file))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for i in range(4):
        writer.write(np.ascontiguousarray(np.roll(frame, 2 * i, axis=1)))
    writer.release()
    out = tmp_path / "clip-dream.avi"
    assert main(["dream", str(video), "--out", str(out), *FAST]) == 0
    cap = cv2.VideoCapture(str(out))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == 4


@pytest.mark.parametrize("args,message", [
    (["missing.png"], "image file not found"),
    (["{cat}", "--layers", "_blocks.99"], "unknown layer"),
    (["{cat}", "--scale", "0.9"], "scale"),
])
def test_dream_user_errors_are_one_line(tmp_path, cat_file, capsys, args, message):
    args = [a.replace("{cat}", str(cat_file)) for a in args]
    assert main(["dream", *args, "--out", str(tmp_path / "x.png"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
