"""deepvis analyze: run a video (or any source) through the model and write an annotated video,
per-frame data, shots, key moments, unit patches and a readable HTML report, as one output set.

The work comes in two steps so that a long video can be split over many workers:

    analyze_segment  frames [start, stop) of the source, reached by seeking -> SegmentResult
                     (per-frame records and series, top patches, the annotated video part)
    finish_video     the segments in order -> every output file in one folder: the series are
                     concatenated and the top patches merged exactly as one pass would have built
                     them, then shots, key moments (saliency) and the report are made

A single-process run is the same two steps with one segment, so a segmented run's files are the same
(timings aside). Only the annotated video's side column differs: its top-9 patches are those seen so
far within the segment.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from toolbox.analysis.activations import layer_means, most_active_channels, top_predictions
from toolbox.analysis.frame_stats import dominant_class, most_active_channels as most_active_over_time
from toolbox.analysis.frame_stats import most_confident_frame
from toolbox.analysis.onnx_frame_analysis import make_frame_analyser, provider_choice
from toolbox.analysis.shots import (adaptive_threshold, consecutive_cosine_distances, pooled_features, shot_starts,
                                    shots_from_starts)
from toolbox.analysis.top_patches import Patch, TopPatches
from toolbox.analysis.unit_cache import UnitCache
from toolbox.analysis.unitvis import preset
from toolbox.atomic import write_image, write_json
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import chosen_layer, describe_layer, layers_to_capture, model_from_config, require_4d
from toolbox.jobs.saliency_maps import check_saliency_choice, saliency_overlay
from toolbox.jobs.units import write_top_patches
from toolbox.models.receptive_field import receptive_field
from toolbox.output_set import OutputSet
from toolbox.render.panes import labelled_pane, scale_to_fit
from toolbox.render.text import titled_image
from toolbox.render.unit_column import unit_column
from toolbox.render.window import WindowContent, render_window
from toolbox.sources import open_source

SERIES = "series.npz"
KEY_MOMENT_SALIENCY = "gradcam"  # the key moments' overlay when --saliency names none
REPORT_UNITS = 16  # most active channels listed in the report
PATCH_TILE = 64  # pixels per top-patch tile in the montages


@dataclass(frozen=True)
class AnalyzeOutputs:
    folder: Path
    video: Path
    frames: Path
    summary: Path
    report: Path


def analyze_outputs(folder: str | Path) -> AnalyzeOutputs:
    folder = Path(folder)
    return AnalyzeOutputs(folder, folder / "annotated.mp4", folder / "frames.jsonl", folder / "summary.json",
                          folder / "report.html")


@dataclass(frozen=True)
class VideoPlan:
    """One source and how its frames are split. segments: source frame ranges [start, stop) in
    order (stop None: to the end); each starts on a multiple of ``every``."""

    source: str
    name: str
    fps: float
    frame_count: int | None
    every: int
    max_frames: int | None
    segments: tuple[tuple[int, int | None], ...]
    saliency: str | None  # the video's zoom pane method (None: the channel zoom)
    moment_saliency: str  # the key moments' overlay method


@dataclass
class SegmentResult:
    """What one stretch of frames produced (picklable, to come back from a worker).

    records: per frame, the frames.jsonl objects. probabilities (n, K) float32 softmax;
    features (n, D) float32 pooled deepest layer; channel_means (n, C) of the chosen layer;
    layer_means (n, L) over ``layers``. patches: per channel its best patches (crops shrunk to
    the montage tile), or None for an ONNX graph. video_part: the rendered frames of this stretch.
    """

    records: list[dict]
    probabilities: np.ndarray
    features: np.ndarray
    channel_means: np.ndarray
    layer_means: np.ndarray
    layers: list[str]
    patches: list[list[Patch]] | None
    forward_ms: list[float]
    video_part: str
    backend: str
    wall_s: float


def check_model_options(config: Config, saliency: str | None = None) -> None:
    """Model, layer and saliency method load and fit together; a DeepvisError naming the fix otherwise."""
    model = model_from_config(config)
    chosen_layer(model, config.model.layer)
    if saliency is not None:
        check_saliency_choice(model, saliency)


def plan_video(source_spec: str, config: Config, saliency: str | None = None,
               segment_seconds: float | None = None) -> VideoPlan:
    """Open the source (a DeepvisError if it cannot be read) and split its frames into segments of
    about ``segment_seconds`` (None: one segment). A source that cannot seek (camera, stream) or
    whose length is unknown is never split."""
    every, limit = config.analyze.every, config.analyze.max_frames
    if every < 1:
        raise DeepvisError("analyze.every must be 1 or more")
    if limit is not None and limit < 1:
        raise DeepvisError("--max-frames must be 1 or more")
    if segment_seconds is not None and segment_seconds <= 0:
        raise DeepvisError(f"--segment-seconds {segment_seconds} must be more than 0")
    with open_source(source_spec) as source:
        fps, count, seekable, name = source.fps or 30.0, source.frame_count, source.seekable, source.name
    segments: list[tuple[int, int | None]] = [(0, None)]
    if segment_seconds is not None and count is not None and seekable:
        wanted = count if limit is None else min(count, limit * every)
        step = max(1, math.ceil(segment_seconds * fps / every)) * every
        segments = [(s, min(s + step, wanted)) for s in range(0, wanted, step)] or [(0, None)]
    return VideoPlan(str(source_spec), name, fps, count, every, limit, tuple(segments), saliency,
                     saliency or KEY_MOMENT_SALIENCY)


def _unit_settings(config: Config):
    """The live window's unit-image settings: the side column shows what the live one would."""
    return preset(config.units.preset, size=config.units.size, steps=config.units.steps)


def analyze_segment(plan: VideoPlan, segment: int, config: Config, video_part: str | Path,
                    progress: bool = False) -> SegmentResult:
    """Analyse the plan's ``segment``-th stretch of frames; the rendered window frames go to
    ``video_part`` (written under a temporary name first, so a retried segment overwrites cleanly)."""
    start_time = time.perf_counter()
    start, stop = plan.segments[segment]
    model = model_from_config(config)
    layer = chosen_layer(model, config.model.layer)
    layout, display = config.layout, config.display
    side = layout.panes.get("side")
    zoom = layout.panes.get("zoom")
    unit_cache, settings = UnitCache(), _unit_settings(config)
    synthetic: dict[int, np.ndarray | None] = {}
    records, probabilities, features, channel_rows, layer_rows, forward_ms = [], [], [], [], [], []
    patches: TopPatches | None = None
    layers = model.layers
    video_part = Path(video_part)
    video_tmp = video_part.with_name(f".{video_part.stem}.{os.getpid()}.part{video_part.suffix}")
    expected = _expected_frames(plan, start, stop)
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(plan.source))
        if start > 0:
            source.seek(start)
        analyser = stack.enter_context(make_frame_analyser(model, layers_to_capture(model, layer), config.model.backend,
                                                           provider_choice(config.model.device)))
        writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), plan.fps / plan.every,
                                 (layout.width, layout.height))
        if not writer.isOpened():
            raise DeepvisError(f"cannot write video {video_part}: check that the folder is writable")
        stack.callback(writer.release)
        bar = stack.enter_context(tqdm(total=expected, unit="frame", disable=not progress or None,
                                       desc=f"analyze {plan.name}"))
        for frame in source:
            if stop is not None and frame.index >= stop:
                break
            if frame.index % plan.every:
                continue
            result = analyser(frame)
            act = result.activations[layer]
            require_4d(layer, act)
            if patches is None and model.module is not None:  # receptive fields need a torch model, not an ONNX file
                patches = TopPatches(receptive_field(model, layer), act.shape[0])
            if patches is not None:
                patches.update(result.view, act, frame.index)
            predictions = top_predictions(result.logits, model.categories, display.top_k)
            active = most_active_channels(act, 5)
            channel = active[0][0]
            status = (f"{plan.name} | {model.name} | {analyser.provider_label} | {describe_layer(model, layer, act)} | "
                      f"channel {channel} mean {active[0][1]:.2f} | frame {frame.index} t={frame.timestamp:.2f}s")
            zoom_image = None
            if plan.saliency is not None and zoom is not None:
                overlay = saliency_overlay(model, result.view, plan.saliency)
                zoom_image = labelled_pane(overlay, f"{_method_title(plan.saliency)}: {predictions[0].label}",
                                           zoom.h, zoom.w)
            side_image = None
            if side is not None:
                if channel not in synthetic:
                    synthetic[channel] = unit_cache.get(model, layer, channel, settings)
                crops = [p.image for p in patches.patches(channel)] if patches is not None else []
                side_image = unit_column(synthetic[channel], crops, side.h, side.w, title=f"{layer} ch {channel}")
            window = render_window(WindowContent(result.view, act, channel, predictions, status, side=side_image,
                                                 zoom=zoom_image), layout, display)
            writer.write(window)
            records.append(_record(frame, predictions, result.activations, layer, active))
            probabilities.append(result.logits.float().softmax(-1).cpu().numpy())
            features.append(pooled_features(result.activations[model.layers[-1]]))
            channel_rows.append(act.float().mean(dim=(-2, -1)).cpu().numpy())
            layer_rows.append([records[-1]["layer_means"][name] for name in layers])
            forward_ms.append(result.forward_ms)
            bar.update(1)
            if stop is None and plan.max_frames is not None and len(records) >= plan.max_frames:
                break
        backend = analyser.provider_label
    if not records:
        video_tmp.unlink(missing_ok=True)
        raise DeepvisError(f"source {plan.source} delivered no frames")
    os.replace(video_tmp, video_part)
    return SegmentResult(records, np.stack(probabilities).astype(np.float32), np.stack(features),
                         np.stack(channel_rows).astype(np.float32), np.asarray(layer_rows, np.float32), list(layers),
                         _compact_patches(patches), forward_ms, str(video_part), backend,
                         time.perf_counter() - start_time)


def _expected_frames(plan: VideoPlan, start: int, stop: int | None) -> int | None:
    end = stop if stop is not None else plan.frame_count
    if end is None:
        return plan.max_frames
    count = (end - start + plan.every - 1) // plan.every
    return count if plan.max_frames is None or stop is not None else min(count, plan.max_frames)


def _record(frame, predictions, activations, layer: str, active) -> dict:
    return {
        "index": frame.index,
        "time": round(frame.timestamp, 4),
        "top5": [{"index": p.index, "label": p.label, "probability": round(p.probability, 6)} for p in predictions],
        "layer_means": {k: round(v, 6) for k, v in layer_means(activations).items()},
        "layer": layer,
        "top_channels": [{"channel": c, "mean": round(v, 6)} for c, v in active],
    }


def _compact_patches(tracker: TopPatches | None) -> list[list[Patch]] | None:
    """Every channel's patches with its crop shrunk to fit the montage tile (small to send back)."""
    if tracker is None:
        return None
    return [[dataclasses.replace(p, image=scale_to_fit(p.image, PATCH_TILE, PATCH_TILE, enlarge=False)) for p in ps]
            for ps in tracker.per_channel()]


def _method_title(method: str) -> str:
    from toolbox.analysis.saliency import METHODS

    return METHODS[method].title


def finish_video(plan: VideoPlan, segments: list[SegmentResult], folder: str | Path, config: Config) -> Path:
    """Write every output of the video into ``folder`` (a staging folder: the caller commits it)
    from its segments in order; -> the folder."""
    from toolbox.jobs.report import build_report

    folder = Path(folder)
    _join_video_parts([Path(s.video_part) for s in segments], folder / "annotated.mp4")
    records = [r for s in segments for r in s.records]
    probabilities = np.concatenate([s.probabilities for s in segments])
    features = np.concatenate([s.features for s in segments])
    times = np.array([r["time"] for r in records], np.float64)
    distances = consecutive_cosine_distances(features)
    threshold = adaptive_threshold(distances)
    shots = shots_from_starts(shot_starts(distances, threshold), len(records))
    model = model_from_config(config)
    layer = records[0]["layer"]
    with open(folder / "frames.jsonl", "w") as out:
        out.writelines(json.dumps(r) + "\n" for r in records)
    channel_means = np.concatenate([s.channel_means for s in segments])
    np.savez_compressed(folder / SERIES, times=times, indices=np.array([r["index"] for r in records]),
                        probabilities=probabilities, channel_means=channel_means,
                        layer_means=np.concatenate([s.layer_means for s in segments]),
                        layers=np.array(segments[0].layers), feature_distances=distances,
                        shot_threshold=np.float64(threshold))
    frame_step = plan.every / plan.fps
    shot_rows = [_shot_row(shot, records, probabilities, model.categories, frame_step) for shot in shots]
    moments = _write_key_moments(plan, model, shot_rows, records, folder)
    if segments[0].patches is not None:
        tracker = TopPatches.merged(receptive_field(model, layer), [s.patches for s in segments], len(records))
        write_top_patches(tracker, folder, layer, tile=PATCH_TILE)
    _copy_unit_images(model, layer, most_active_over_time(channel_means, REPORT_UNITS), config, folder)
    forward_ms = [ms for s in segments for ms in s.forward_ms]
    wall = sum(s.wall_s for s in segments)
    top1: dict[str, int] = {}
    for r in records:
        top1[r["top5"][0]["label"]] = top1.get(r["top5"][0]["label"], 0) + 1
    write_json(folder / "summary.json", {
        "source": plan.source,
        "model": model.name,
        "weights": str(model.weights),
        "random_weights": str(model.weights) == "random",
        "backend": segments[0].backend,
        "layer": layer,
        "frames_processed": len(records),
        "every": plan.every,
        "source_fps": plan.fps,
        "duration_s": round((plan.frame_count / plan.fps) if plan.frame_count else float(times[-1] + frame_step), 4),
        "video": {"path": "annotated.mp4", "fps": plan.fps / plan.every, "width": config.layout.width,
                  "height": config.layout.height},
        "top1_counts": dict(sorted(top1.items(), key=lambda kv: -kv[1])),
        "shots": shot_rows,
        "shot_threshold": round(threshold, 6),
        "key_moments": moments,
        "timing": {"mean_forward_ms": round(sum(forward_ms) / len(forward_ms), 3), "worker_s": round(wall, 3),
                   "frames_per_second": round(len(records) / wall, 3) if wall > 0 else None,
                   "segments": len(segments)},
    })
    build_report(folder)
    return folder


def _shot_row(shot, records: list[dict], probabilities: np.ndarray, categories, frame_step: float) -> dict:
    """summary.json's entry for a shot: start and end (s), dominant class, first, last and key frame."""
    return {"start": round(records[shot.first]["time"], 4),
            "end": round(records[shot.last]["time"] + frame_step, 4),
            "top1": categories[dominant_class(probabilities, shot)],
            "first_frame": records[shot.first]["index"], "last_frame": records[shot.last]["index"],
            "key_frame": records[most_confident_frame(probabilities, shot)]["index"]}


def _join_video_parts(parts: list[Path], final: Path) -> None:
    """The parts' frames, in order, as one video (a single part is moved, not re-encoded)."""
    if len(parts) == 1:
        os.replace(parts[0], final)
        return
    first = cv2.VideoCapture(str(parts[0]))
    fps, size = first.get(cv2.CAP_PROP_FPS), (int(first.get(cv2.CAP_PROP_FRAME_WIDTH)),
                                              int(first.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    first.release()
    writer = cv2.VideoWriter(str(final), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    try:
        for part in parts:
            video = cv2.VideoCapture(str(part))
            while True:
                ok, image = video.read()
                if not ok:
                    break
                writer.write(image)
            video.release()
            part.unlink()
    finally:
        writer.release()


def _write_key_moments(plan: VideoPlan, model, shot_rows: list[dict], records: list[dict], folder: Path) -> list[dict]:
    """Per shot, its key frame read again (by seeking), the model view and the saliency overlay of
    its top-1 class as report/moment_NN.png and report/moment_NN_saliency.png; -> the moments' data.
    A source that cannot seek (camera, stream) has no key moments."""
    by_index = {r["index"]: r for r in records}
    moments = []
    with open_source(plan.source) as source:
        if not source.seekable:
            return []
        for n, shot in enumerate(shot_rows):
            index = shot["key_frame"]
            source.seek(index)
            frame = source.read()
            if frame is None:
                continue
            view = model.preprocess.model_view(frame.image)
            record = by_index[index]
            moment = {"shot": n + 1, "frame": index, "time": record["time"], "top5": record["top5"],
                      "view": f"report/moment_{n:02d}.png", "saliency": None, "method": None}
            write_image(folder / moment["view"], view)
            if model.module is not None:
                method = plan.moment_saliency
                overlay = saliency_overlay(model, view, method)
                title = f"{_method_title(method)}: {record['top5'][0]['label']}"
                moment["saliency"], moment["method"] = f"report/moment_{n:02d}_saliency.png", _method_title(method)
                write_image(folder / moment["saliency"], titled_image(overlay, title, scale=0.4))
            moments.append(moment)
    return moments


def _copy_unit_images(model, layer: str, channels: list[int], config: Config, folder: Path) -> None:
    """The cached synthetic images of ``channels`` (the live window's settings) as
    report/units/<channel:04d>.png; channels without a cached image are skipped (never computed)."""
    cache, settings = UnitCache(), _unit_settings(config)
    for c in channels:
        path = cache.path(model, layer, c, settings)
        if path.is_file():
            (folder / "report" / "units").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / "report" / "units" / f"{c:04d}.png")


def analyze(source_spec: str, out_dir: str | Path, config: Config, progress: bool = True,
            saliency: str | None = None, segment_seconds: float | None = None) -> AnalyzeOutputs:
    """Analyse one source in this process and write its outputs to ``out_dir`` as one set (they
    appear together when the run completes; an earlier run's outputs are replaced as a whole).
    segment_seconds: analyse the video in stretches of this length, one after another, as Ray
    workers would (the outputs are the same)."""
    plan = plan_video(source_spec, config, saliency, segment_seconds)
    check_model_options(config, saliency)
    with OutputSet(out_dir, job="analyze") as outputs:
        parts_dir = outputs.path(".parts/x").parent
        segments = [analyze_segment(plan, i, config, parts_dir / f"{i:04d}.mp4", progress)
                    for i in range(len(plan.segments))]
        finish_video(plan, segments, outputs.staging, config)
        shutil.rmtree(parts_dir, ignore_errors=True)
    return analyze_outputs(out_dir)
