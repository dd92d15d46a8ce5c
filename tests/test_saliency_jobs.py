"""deepvis inspect's labelled sheet and method x metric table, and analyze's per-frame metric."""
from __future__ import annotations

import json

import cv2
import numpy as np

from toolbox.analysis.saliency.metrics import ranking
from toolbox.cli import main
from toolbox.jobs.saliency_maps import SHEET_TILE, write_saliency_maps

METHODS = ("gradcam", "layercam", "lrp_epsilon", "gradient")


def test_sheet_holds_every_chosen_map_and_the_table_ranks_them(tmp_path, lite0, cat_bgr):
    view = cv2.resize(lite0.preprocess.model_view(cat_bgr), (96, 96), interpolation=cv2.INTER_AREA)
    written = write_saliency_maps(lite0, view, tmp_path, methods=METHODS, metrics=("deletion", "insertion"))
    sheet = cv2.imread(str(written["saliency/sheet"]))
    maps = [cv2.imread(str(written[f"saliency/{m}"])) for m in METHODS]
    maps = [m[-m.shape[1]:] for m in maps]  # each PNG is its square overlay under a title bar
    cols = (sheet.shape[1] - 6) // (SHEET_TILE + 6)
    cell_h = SHEET_TILE + 3 * 16 + 4  # title, cost and layer, deletion/insertion lines
    assert cols * ((sheet.shape[0] - 34) // (cell_h + 6)) >= len(METHODS)
    # each tile is its map, in order: the tile's picture equals the map's own PNG fitted to the tile
    for n, image in enumerate(maps):
        r, c = divmod(n, cols)
        x, y = 6 + c * (SHEET_TILE + 6), 28 + 6 + r * (cell_h + 6)
        tile = sheet[y + 8 : y + SHEET_TILE - 8, x + 8 : x + SHEET_TILE - 8].astype(int)
        fitted = cv2.resize(image, (SHEET_TILE, SHEET_TILE), interpolation=cv2.INTER_LINEAR)[8:-8, 8:-8].astype(int)
        assert np.abs(tile - fitted).mean() < 3, METHODS[n]
    assert len({m.tobytes() for m in maps}) == len(METHODS)  # different methods, different maps
    table = json.loads(written["saliency/metrics_json"].read_text())
    assert set(table["table"]) == set(METHODS) and table["higher_is_better"] == {"deletion": False, "insertion": True}
    assert [r["method"] for r in table["ranking"]] == [m for m, _ in ranking(table["table"])]
    markdown = written["saliency/metrics"].read_text().splitlines()
    assert markdown[0].startswith("| rank | method | deletion ↓ | insertion ↑") and len(markdown) == 2 + len(METHODS)
    assert markdown[2].split("|")[2].strip() == table["ranking"][0]["method"]
    index = json.loads(written["saliency/index"].read_text())
    assert all(index["maps"][m]["title"] and index["maps"][m]["description"] for m in METHODS)


def test_inspect_metrics_prints_the_table(tmp_path, cat_bgr, capsys):
    image = tmp_path / "cat.png"
    cv2.imwrite(str(image), cat_bgr)
    out = tmp_path / "out"
    assert main(["inspect", str(image), "--out", str(out), "--methods", "gradcam,eigencam", "--metrics", "deletion"]) == 0
    printed = capsys.readouterr().out
    assert "| rank | method | deletion ↓ | mean rank |" in printed
    assert (out / "saliency" / "sheet.png").exists() and (out / "saliency" / "metrics.json").exists()


def test_analyze_records_the_metric_on_a_subsample(tmp_path):
    out = tmp_path / "an"
    assert main(["analyze", "demo", "--out", str(out), "--max-frames", "3", "--saliency", "gradcam",
                 "--metrics", "deletion", "--metrics-every", "2", "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    scored = [r["saliency_metrics"] for r in records if "saliency_metrics" in r]
    assert len(records) == 3 and len(scored) == 2 and "saliency_metrics" not in records[1]
    assert all(s["method"] == "gradcam" and 0 <= s["deletion"] <= 1 for s in scored)
    summary = json.loads((out / "summary.json").read_text())["saliency_metrics"]
    assert summary["frames"] == 2 and summary["every"] == 2
    assert abs(summary["mean"]["deletion"] - np.mean([s["deletion"] for s in scored])) < 1e-5
