"""deepvis analyze's report on a video made here: 2 s of the cat photo, a hard cut, 2 s of the
coffee photo (10 fps, light noise per frame). The analysis runs once for the module."""
from __future__ import annotations

import html.parser
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from toolbox.cli import main
from toolbox.config import load_config
from toolbox.render.unit_column import EMPTY

FPS, SECONDS, SIZE = 10, 2.0, (160, 120)
CUT = int(FPS * SECONDS)  # first frame of the coffee shot
SECTIONS = ["header", "timeline", "shots", "layers", "moments", "units", "frames"]


def write_cut_video(path, first: np.ndarray, second: np.ndarray, fps: int = FPS, seconds: float = SECONDS,
                    size=SIZE, seed: int = 0) -> None:
    """``seconds`` of ``first`` then of ``second`` (BGR photos), each frame with uniform noise of +-6 levels."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for photo in (first, second):
        base = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.int16)
        for _ in range(int(round(fps * seconds))):
            writer.write(np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8))
    writer.release()


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.sources, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.sources.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])


def parse_page(path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


@pytest.fixture(scope="module")
def video(tmp_path_factory, cat_bgr, coffee_bgr):
    path = tmp_path_factory.mktemp("video") / "cat_cut_coffee.mp4"
    write_cut_video(path, cat_bgr, coffee_bgr)
    return path


def unit_picture(channel: int, size: int = 96) -> np.ndarray:
    """A stand-in synthetic image that says its channel: a colour ramp keyed by the channel number."""
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    image = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)),
                      np.full((size, size), (channel * 37) % 256, np.float32)], axis=-1)
    return image.astype(np.uint8)


@pytest.fixture(scope="module")
def unit_cache(tmp_path_factory, lite0):
    """A unit cache holding a picture for every channel of the default layer (the live window's
    settings), so analyze can show them; the session's cache is restored afterwards."""
    from toolbox.analysis.unit_cache import UnitCache
    from toolbox.analysis.unitvis import preset

    units = load_config().units
    settings = preset(units.preset, size=units.size, steps=units.steps)
    root = tmp_path_factory.mktemp("unit-cache")
    cache = UnitCache(root / "units")
    for channel in range(112):
        cache.put(lite0, "_blocks.8", channel, settings, unit_picture(channel, units.size))
    before = os.environ["DEEPVIS_CACHE"]
    os.environ["DEEPVIS_CACHE"] = str(root)
    yield cache
    os.environ["DEEPVIS_CACHE"] = before


@pytest.fixture(scope="module")
def analysed(video, tmp_path_factory, unit_cache):
    out = tmp_path_factory.mktemp("analysed") / "out"
    assert main(["analyze", str(video), "--out", str(out), "--quiet"]) == 0
    return out


def summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_report_has_every_section_and_every_picture_it_shows(analysed):
    page = parse_page(analysed / "report.html")
    assert page.ids == SECTIONS
    assert page.sources, "the report shows no pictures"
    for src in page.sources:
        image = cv2.imread(str(analysed / src))
        assert image is not None and image.std() > 10, src
    assert "report/frames.csv" in page.links
    text = (analysed / "report.html").read_text()
    for expected in ("cat_cut_coffee.mp4", "lite0", "torch CPU", "_blocks.8", "frames/s"):
        assert expected in text


def test_class_timeline_puts_egyptian_cat_before_the_cut_and_espresso_after(analysed):
    from toolbox.analysis.frame_stats import timeline_classes
    from toolbox.models.labels import imagenet_categories

    with np.load(analysed / "series.npz") as series:
        p, times = series["probabilities"], series["times"]
    names = imagenet_categories()
    cat, espresso = names.index("Egyptian cat"), names.index("espresso")
    assert {cat, espresso} <= set(timeline_classes(p))
    shown = timeline_classes(p)
    top = np.array(shown)[p[:, shown].argmax(axis=1)]
    assert np.all(top[times < SECONDS] == cat) and np.all(top[times >= SECONDS] == espresso)
    shots = summary(analysed)["shots"]
    assert [s["top1"] for s in shots] == ["Egyptian cat", "espresso"]


def test_shot_detector_finds_the_cut_within_one_frame_and_no_other(analysed):
    shots = summary(analysed)["shots"]
    assert len(shots) == 2
    assert abs(shots[1]["first_frame"] - CUT) <= 1
    assert shots[0]["start"] == 0.0 and shots[1]["end"] == pytest.approx(2 * SECONDS)
    assert shots[0]["end"] == shots[1]["start"]


def test_key_moments_show_one_frame_per_shot_with_its_saliency_and_top5(analysed):
    data = summary(analysed)
    moments = data["key_moments"]
    assert [m["shot"] for m in moments] == [1, 2]
    for moment, shot in zip(moments, data["shots"]):
        assert shot["first_frame"] <= moment["frame"] <= shot["last_frame"] and moment["frame"] == shot["key_frame"]
        assert len(moment["top5"]) == 5 and moment["method"] == "Grad-CAM"
        view = cv2.imread(str(analysed / moment["view"]))
        overlay = cv2.imread(str(analysed / moment["saliency"]))
        assert view.shape == (224, 224, 3) and overlay.shape[1] == 224 and overlay.shape[0] > 224  # title above
        assert np.abs(overlay[-224:].astype(int) - view).mean() > 10  # the heat map is drawn over the frame
    assert moments[0]["top5"][0]["label"] == "Egyptian cat" and moments[1]["top5"][0]["label"] == "espresso"


def test_csv_has_one_row_per_frame_with_the_shot_and_top_classes(analysed):
    lines = (analysed / "report" / "frames.csv").read_text().splitlines()
    assert lines[0].startswith("frame,time_s,shot,top1,p1")
    rows = [line.split(",") for line in lines[1:]]
    assert len(rows) == 2 * CUT
    assert rows[0][2] == "1" and rows[-1][2] == "2" and rows[-1][3] == "espresso"


def test_units_section_lists_16_channels_with_titled_top9_montages_and_cached_pictures(analysed):
    text = (analysed / "report.html").read_text()
    assert text.count('class="unit"') == 16
    pictures = sorted((analysed / "report" / "units").glob("*.png"))
    assert len(pictures) == 16
    for path in pictures:
        assert np.array_equal(cv2.imread(str(path)), unit_picture(int(path.stem)))
        assert f'src="report/units/{path.name}"' in text
    montage = cv2.imread(str(next((analysed / "top_patches").glob("*_0000.png"))))
    title, body = montage[:20], montage[24:]
    assert (title < 60).mean() > 0.8 and (title > 150).any()  # a dark strip with light text
    assert body.std() > 10


def test_report_command_rebuilds_the_same_page_from_the_files(analysed, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(analysed, copy)
    before = {p.name: cv2.imread(str(p)) for p in (copy / "report").glob("*.png")}
    page = (copy / "report.html").read_text()
    for name in ("timeline.png", "layers.png", "channels.png", "feature_change.png", "frames.csv"):
        (copy / "report" / name).unlink()
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert (copy / "report.html").read_text() == page
    for name, image in before.items():
        assert np.array_equal(cv2.imread(str(copy / "report" / name)), image), name


def test_random_weights_are_flagged_in_the_header(analysed, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(analysed, copy)
    assert "RANDOM WEIGHTS" not in (copy / "report.html").read_text()
    data = summary(copy)
    (copy / "summary.json").write_text(json.dumps({**data, "weights": "random", "random_weights": True}))
    assert main(["report", str(copy)]) == 0
    assert "RANDOM WEIGHTS: the predictions mean nothing" in (copy / "report.html").read_text()


def test_report_command_on_a_folder_without_an_analysis_is_one_line_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "summary.json" in err
    assert not (tmp_path / "report.html").exists()


def side_and_zoom(frame: np.ndarray):
    layout = load_config().layout.panes
    side, zoom = layout["side"], layout["zoom"]
    return (frame[side.y:side.y + side.h, side.x:side.x + side.w],
            frame[zoom.y:zoom.y + zoom.h, zoom.x:zoom.x + zoom.w])


def read_frame(path, index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def test_annotated_video_side_column_shows_the_units_picture_and_top_patches(analysed):
    from toolbox.render.panes import fit_image
    from toolbox.render.unit_column import CAPTION_H

    frame = 2 * CUT - 1
    side, _ = side_and_zoom(read_frame(analysed / "annotated.mp4", frame))
    patches = side[-200:, 40:-40]  # the 3x3 montage at the bottom of the column
    assert patches.std() > 20
    assert np.abs(patches.astype(int) - np.array(EMPTY)).mean() > 20  # photos, not empty cells
    channel = json.loads((analysed / "frames.jsonl").read_text().splitlines()[frame])["top_channels"][0]["channel"]
    square = min(side.shape[1], (side.shape[0] - 2 * CAPTION_H) // 2)
    x = (side.shape[1] - square) // 2
    shown = side[CAPTION_H:CAPTION_H + square, x:x + square].astype(int)
    expected = fit_image(unit_picture(channel), square, square, interpolation=cv2.INTER_LINEAR)
    other = fit_image(unit_picture(channel + 1), square, square, interpolation=cv2.INTER_LINEAR)
    assert np.abs(shown - expected).mean() < 8 < np.abs(shown - other).mean()


def test_annotated_video_names_the_saliency_method_and_fills_the_zoom_pane(video, tmp_path, lite0):
    from toolbox.jobs.saliency_maps import saliency_overlay
    from toolbox.render.panes import labelled_pane, fit_image

    out = tmp_path / "saliency"
    assert main(["analyze", str(video), "--out", str(out), "--quiet", "--max-frames", "1",
                 "--saliency", "gradcam"]) == 0
    _, zoom = side_and_zoom(read_frame(out / "annotated.mp4", 0))
    first = cv2.VideoCapture(str(video)).read()[1]
    view = lite0.preprocess.model_view(first)
    overlay = saliency_overlay(lite0, view, "gradcam")
    label = json.loads((out / "frames.jsonl").read_text().splitlines()[0])["top5"][0]["label"]
    expected = labelled_pane(overlay, f"Grad-CAM: {label}", *zoom.shape[:2])
    unlabelled = fit_image(overlay, *zoom.shape[:2], interpolation=cv2.INTER_LINEAR)
    strip = slice(0, 22)
    assert np.abs(zoom.astype(int) - expected).mean() < 8  # the whole pane: the map, enlarged to fill it
    error = np.abs(zoom[strip].astype(int) - expected[strip]).mean()
    assert error < np.abs(zoom[strip].astype(int) - unlabelled[strip]).mean()  # the method's name is on it
