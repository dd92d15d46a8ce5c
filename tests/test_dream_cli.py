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


def test_octaves_stop_one_level_below_the_receptive_field():
    from toolbox.analysis.dream import preset
    from toolbox.jobs.dream import bounded_octaves
    from toolbox.errors import DeepvisError

    classic = preset("classic")  # 4 octaves, scale 1.4: long sides 175, 245, 343, 480 for a 480x360 image
    field = ("_blocks.8", 211)  # lite0's receptive field there
    assert bounded_octaves(classic, 360, 480, field, explicit=False).octaves == 4  # one level (175) below 211
    with pytest.raises(DeepvisError, match="--octaves 5 does not fit a 480x360 image: .* use --octaves 4 or fewer"):
        bounded_octaves(classic.replace(octaves=5), 360, 480, field, explicit=True)  # 125 and 175 below
    assert bounded_octaves(classic, 360, 480, ("_blocks.15", 851), explicit=False).octaves == 1  # all below
    assert bounded_octaves(classic.replace(octaves=1000), 360, 480, None, explicit=False).octaves == 1000  # logits


def test_the_resize_family_may_not_grow_past_four_times_the_image():
    from toolbox.analysis.dream import preset
    from toolbox.jobs.dream import bounded_octaves
    from toolbox.errors import DeepvisError

    tutorial = preset("tf-tutorial")  # levels 1.3**n, n = -2 .. octaves - 3: the default's largest is 1.69x
    assert bounded_octaves(tutorial, 300, 400, ("_blocks.6", 115), explicit=False).octaves == 5
    with pytest.raises(DeepvisError, match="largest octave would exceed 4x the image; use --octaves 8 or fewer"):
        bounded_octaves(tutorial.replace(octaves=9), 300, 400, ("_blocks.6", 115), explicit=True)  # 1.3**6 = 4.8
