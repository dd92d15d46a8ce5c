"""Frame sources: demo clip, files, folders, conversions, and the errors users see."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from toolbox.errors import DeepvisError
from toolbox.sources import demo_clip_path, open_source
from toolbox.sources.convert import to_bgr8


def write_video(path, frames=12, size=(64, 48), fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), i * 20, np.uint8)
        writer.write(image)
    writer.release()
    return path


def test_demo_is_the_carphone_clip_read_from_the_package_folder():
    path = demo_clip_path()
    assert path.name == "carphone_pristine.mp4" and path.is_file()
    with open_source("demo") as source:
        frame = source.read()
        assert frame.image.shape == (144, 176, 3) and frame.image.dtype == np.uint8
        assert source.fps == pytest.approx(29.97, abs=0.1)
        assert source.frame_count > 100


def test_video_reads_every_frame_then_ends(tmp_path):
    with open_source(str(write_video(tmp_path / "v.avi"))) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(12))
    assert frames[3].timestamp == pytest.approx(0.3)
    assert abs(int(frames[5].image.mean()) - 100) <= 3


def test_video_seeks_and_loops(tmp_path):
    path = write_video(tmp_path / "v.avi")
    with open_source(str(path), loop=True) as source:
        source.seek(10)
        assert [source.read().index for _ in range(4)] == [10, 11, 0, 1]
        source.seek(5)
        frame = source.read()
        assert frame.index == 5 and abs(int(frame.image.mean()) - 100) <= 3


def test_folder_and_glob_of_images(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"im{i}.png"), np.full((8, 8, 3), i * 50, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    assert [f.index for f in open_source(str(tmp_path))] == [0, 1, 2]
    assert len(list(open_source(str(tmp_path / "im[12].png")))) == 2


def test_grayscale_16bit_and_alpha_become_bgr8(tmp_path):
    gray16 = np.full((4, 4), 65535, np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 2] = 200
    rgba[..., 3] = 128
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba)
    g = open_source(str(tmp_path / "g16.png")).read().image
    a = open_source(str(tmp_path / "alpha.png")).read().image
    assert g.shape == (4, 4, 3) and g.dtype == np.uint8 and (g == 255).all()
    assert a.shape == (4, 4, 3) and tuple(a[0, 0]) == (0, 0, 100)
    assert to_bgr8(np.full((2, 2), 0.5, np.float32)).max() == 128


def test_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(DeepvisError, match="no such file or folder") as info:
        open_source(str(tmp_path / "nope.mp4"))
    assert "\n" not in str(info.value)


def test_truncated_video_is_a_one_line_error(tmp_path):
    good = demo_clip_path().read_bytes()
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(good[:2000])
    with pytest.raises(DeepvisError, match="cannot decode video"):
        open_source(str(bad))


def test_missing_camera_is_a_one_line_error():
    with pytest.raises(DeepvisError, match="no camera at index 7"):
        open_source("7")


def test_dead_stream_url_is_a_one_line_error():
    with pytest.raises(DeepvisError, match="cannot open stream"):
        open_source("http://127.0.0.1:9/stream.mjpg")


def test_empty_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(DeepvisError, match="no images found"):
        open_source(str(tmp_path))
