"""deepvis units (precompute into the cache) and analyze's top-patch outputs."""
from __future__ import annotations

import json

import cv2

from toolbox.cli import main
from toolbox.jobs.units import parse_channels


def test_parse_channels_accepts_slices_lists_and_all():
    assert parse_channels("0:4", 10) == [0, 1, 2, 3]
    assert parse_channels("3,5", 10) == [3, 5]
    assert parse_channels(None, 3) == [0, 1, 2]
    assert parse_channels("8:", 10) == [8, 9]


def test_units_command_fills_the_cache_and_rejects_bad_channels(tmp_path, capsys):
    args = ["units", "--layer", "_blocks.0", "--out", str(tmp_path), "--steps", "2", "--size", "32", "--quiet"]
    assert main([*args, "--channels", "0:3"]) == 0
    pngs = sorted(p.name for p in tmp_path.rglob("0*.png"))
    assert pngs == ["0000.png", "0001.png", "0002.png"]
    assert cv2.imread(str(next(tmp_path.rglob("0001.png")))).shape == (32, 32, 3)
    assert main([*args, "--channels", "16,40"]) == 2
    assert "0..15" in capsys.readouterr().err


def test_analyze_writes_a_montage_and_the_maxima_of_every_channel(tmp_path):
    out = tmp_path / "run"
    assert main(["analyze", "demo", "--out", str(out), "--max-frames", "3", "--layer", "_blocks.1", "--quiet"]) == 0
    data = json.loads((out / "top_patches.json").read_text())
    assert data["layer"] == "_blocks.1" and data["frames_seen"] == 3 and len(data["channels"]) == 24
    assert data["receptive_field"]["size"] == [11, 11]
    for entry in data["channels"]:
        values = [m["value"] for m in entry["maxima"]]
        assert len(values) == 3 and values == sorted(values, reverse=True)
        assert sorted(m["frame"] for m in entry["maxima"]) == sorted({m["frame"] for m in entry["maxima"]})
    assert len(list((out / "top_patches").glob("_blocks.1_*.png"))) == 24
