"""deepvis report: the HTML report of an analysed video, built only from the files analyze wrote
(summary.json, series.npz, frames.jsonl, top_patches/, report/ pictures), so a changed template
needs no new analysis.

Writes ``DIR/report.html``, its plots ``DIR/report/*.png`` and ``DIR/report/frames.csv``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from toolbox import __version__
from toolbox.analysis.frame_stats import most_active_channels, timeline_classes
from toolbox.atomic import write_image, write_text
from toolbox.errors import DeepvisError
from toolbox.render.report import report_html
from toolbox.render.report.plots import (channel_activity_figure, class_timeline_figure, feature_change_figure,
                                         figure_image, layer_activity_figure)

REPORT_FILES = ("summary.json", "series.npz", "frames.jsonl")
TABLE_ROWS = 2000  # frames shown in the page's table; the CSV has every frame
REPORT_UNITS = 16
LABELLED_CHANNELS = 8


def load_analysis(folder: str | Path) -> tuple[dict, dict[str, np.ndarray], list[dict]]:
    """(summary, series arrays, frame records) of an analyze output folder; a DeepvisError naming
    the missing file otherwise."""
    folder = Path(folder)
    missing = [name for name in REPORT_FILES if not (folder / name).is_file()]
    if missing:
        raise DeepvisError(f"{folder} holds no complete analysis (missing {', '.join(missing)}): "
                           "give the --out folder of a finished deepvis analyze")
    summary = json.loads((folder / "summary.json").read_text())
    with np.load(folder / "series.npz") as data:
        series = {k: data[k] for k in data.files}
    records = [json.loads(line) for line in (folder / "frames.jsonl").read_text().splitlines() if line.strip()]
    return summary, series, records


def analysed_span(summary: dict, digits: int = 1) -> str | None:
    """The stretch of the source analysed, labelled with the full length where it is known:
    '0.0–0.4 s of 1.0 s', '0.0–12.3 s (full length unknown)'; None for a summary written before
    deepvis recorded it."""
    if "analysed_s" not in summary:
        return None
    start, end = summary["analysed_s"]
    span = f"{start:.{digits}f}–{end:.{digits}f} s"
    if summary.get("source_frames") is None:
        return f"{span} (full length unknown)"
    return f"{span} of {summary['duration_s']:.{digits}f} s"


def frame_table(summary: dict, series: dict[str, np.ndarray], records: list[dict]) -> tuple[list[str], list[list]]:
    """(column names, one row per frame): frame, time, shot, top-3 classes with probabilities,
    feature change from the previous frame, mean activation of the chosen layer."""
    layer = summary["layer"]
    columns = ["frame", "time_s", "shot", "top1", "p1", "top2", "p2", "top3", "p3", "feature_change",
               f"{layer} mean"]
    first_frames = [s["first_frame"] for s in summary["shots"]]
    distances = series["feature_distances"]
    channel_means = series["channel_means"]
    rows = []
    for t, record in enumerate(records):
        shot = int(np.searchsorted(first_frames, record["index"], side="right"))
        top = record["top5"][:3]
        cells = [record["index"], record["time"], shot]
        for p in top:
            cells += [p["label"], round(p["probability"], 4)]
        cells += ["", ""] * (3 - len(top))
        cells.append(round(float(distances[t - 1]), 4) if t > 0 else "")
        cells.append(round(float(channel_means[t].mean()), 4))
        rows.append(cells)
    return columns, rows


def _csv_text(columns: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def cut_times(summary: dict, series: dict[str, np.ndarray]) -> list[float]:
    """Seconds halfway between the last frame of each shot and the first of the next."""
    position = {int(index): t for t, index in enumerate(series["indices"])}
    times = series["times"]
    cuts = []
    for shot in summary["shots"][1:]:
        t = position[shot["first_frame"]]
        cuts.append(float((times[t - 1] + times[t]) / 2))
    return cuts


def _write_plots(folder: Path, summary: dict, series: dict[str, np.ndarray], categories: dict[int, str]) -> dict:
    times = series["times"]
    cuts = cut_times(summary, series)
    probabilities = series["probabilities"]
    classes = timeline_classes(probabilities, 3)
    labels = [categories.get(c, str(c)) for c in classes]
    figures = {
        "timeline": class_timeline_figure(times, probabilities[:, classes], labels, cuts),
        "feature_change": feature_change_figure(times, series["feature_distances"], float(series["shot_threshold"]),
                                                cuts),
        "layers": layer_activity_figure(times, series["layer_means"], [str(n) for n in series["layers"]], cuts),
        "channels": channel_activity_figure(times, series["channel_means"], summary["layer"],
                                            most_active_channels(series["channel_means"], LABELLED_CHANNELS), cuts),
    }
    plots = {}
    for name, figure in figures.items():
        plots[name] = f"report/{name}.png"
        write_image(folder / plots[name], figure_image(figure))
    return plots


def _category_names(records: list[dict]) -> dict[int, str]:
    """Class index -> label, from the top-5 lists in the records (every class a plot can name)."""
    return {p["index"]: p["label"] for r in records for p in r["top5"]}


def _units(folder: Path, summary: dict, series: dict[str, np.ndarray]) -> list[dict]:
    layer = summary["layer"]
    stem = layer.replace("/", "_")
    top = {}
    if (folder / "top_patches.json").is_file():
        top = {c["channel"]: c["maxima"] for c in json.loads((folder / "top_patches.json").read_text())["channels"]}
    means = series["channel_means"].mean(axis=0)
    fps = summary.get("source_fps") or 30.0
    units = []
    for c in most_active_channels(series["channel_means"], REPORT_UNITS):
        patches = f"top_patches/{stem}_{c:04d}.png"
        synthetic = f"report/units/{c:04d}.png"
        units.append({"channel": c, "mean": float(means[c]),
                      "patches": patches if (folder / patches).is_file() else None,
                      "times": [m["frame"] / fps for m in top.get(c, [])],
                      "synthetic": synthetic if (folder / synthetic).is_file() else None})
    return units


def build_report(folder: str | Path) -> Path:
    """Write ``folder``/report.html (and its plots and CSV under ``folder``/report/) from the
    analysis files in ``folder``; -> the page's path."""
    folder = Path(folder)
    summary, series, records = load_analysis(folder)
    plots = _write_plots(folder, summary, series, _category_names(records))
    columns, rows = frame_table(summary, series, records)
    write_text(folder / "report" / "frames.csv", _csv_text(columns, rows))
    timing = summary.get("timing", {})
    shots = []
    thumbnails = {m["shot"]: m["view"] for m in summary.get("key_moments", [])}
    for n, shot in enumerate(summary["shots"], start=1):
        shots.append({**shot, "thumbnail": thumbnails.get(n)})
    methods = {m["method"] for m in summary.get("key_moments", []) if m.get("method")}
    context = {
        "header": {
            "source": summary["source"], "source_name": Path(summary["source"]).name,
            "version": __version__, "duration_s": summary["duration_s"],
            "analysed": analysed_span(summary, digits=2), "frames": summary["frames_processed"],
            "every": summary["every"], "model": summary["model"], "weights": summary["weights"],
            "random_weights": summary["random_weights"], "layer": summary["layer"], "backend": summary["backend"],
            "fps": timing.get("frames_per_second") or 0.0, "forward_ms": timing.get("mean_forward_ms") or 0.0,
        },
        "plots": plots,
        "shots": shots,
        "threshold": summary["shot_threshold"],
        "moments": summary.get("key_moments", []),
        "saliency_title": ", ".join(sorted(methods)) or "saliency",
        "units": _units(folder, summary, series),
        "csv": "report/frames.csv",
        "table": {"columns": columns, "rows": rows[:TABLE_ROWS]},
    }
    return write_text(folder / "report.html", report_html(context))
