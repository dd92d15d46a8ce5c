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

import collections
import contextlib
import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from toolbox.analysis.activations import layer_means, most_active_channels, top_predictions
from toolbox.analysis.backend_choice import make_frame_analyser, provider_choice
from toolbox.analysis.frame_stats import dominant_class, most_active_channels as most_active_over_time
from toolbox.analysis.frame_stats import most_confident_frame
from toolbox.analysis.saliency.metrics import METRICS, faithfulness
from toolbox.analysis.shots import (adaptive_threshold, consecutive_cosine_distances, pooled_features, shot_starts,
                                    shots_from_starts)
from toolbox.analysis.top_patches import Patch, TopPatches
from toolbox.analysis.unit_cache import UnitCache
from toolbox.analysis.unitvis import preset
from toolbox.atomic import user_write_errors
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import (check_folder_name, check_max_frames, chosen_layer, describe_layer, layers_to_capture,
                                 model_from_config, require_4d, skipped_summary, warn_skipped)
from toolbox.jobs.saliency_maps import check_saliency_choice, saliency_overlay, top1_saliency
from toolbox.jobs.units import write_top_patches
from toolbox.models.receptive_field import receptive_field
from toolbox.output_set import OutputSet, check_output_folder
from toolbox.render.panes import labelled_pane, scale_to_fit
from toolbox.render.text import titled_image
from toolbox.render.unit_column import unit_column
from toolbox.render.window import WindowContent, render_window
from toolbox.sources import open_source
from toolbox.video_file import VideoOutput

SERIES = "series.npz"
PARTS = ".parts"  # inside the staging folder: the segments' video parts until they are joined
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
    seekable: bool  # frames can be read again (files, images); not cameras and streams
    metrics: tuple[str, ...] = ()  # faithfulness metrics of the saliency map (toolbox.analysis.saliency.metrics)
    metrics_every: int = 10  # ... on the frames whose processed number (index // every) is a multiple of this


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
    skipped: list[dict]  # files of a folder source passed over as unreadable


def check_model_options(config: Config, saliency: str | None = None) -> None:
    """Model, layer and saliency method load and fit together; a DeepvisError naming the fix otherwise."""
    model = model_from_config(config)
    chosen_layer(model, config.model.layer)
    if saliency is not None:
        check_saliency_choice(model, saliency)


def plan_video(source_spec: str, config: Config, saliency: str | None = None,
               segment_seconds: float | None = None, metrics: Sequence[str] = (), metrics_every: int = 10) -> VideoPlan:
    """Open the source (a DeepvisError if it cannot be read) and split its frames into segments of
    about ``segment_seconds`` (None: one segment). A source that cannot seek (camera, stream) or
    whose length is unknown is never split. metrics / metrics_every: score the saliency map's
    faithfulness on every ``metrics_every``-th processed frame."""
    every, limit = config.analyze.every, check_max_frames(config.analyze.max_frames)
    if every < 1:
        raise DeepvisError(f"--every must be 1 or more, not {every}")
    if metrics and saliency is None:
        raise DeepvisError("--metrics scores a saliency map: add --saliency METHOD (e.g. --saliency gradcam)")
    if metrics_every < 1:
        raise DeepvisError(f"--metrics-every must be 1 or more, not {metrics_every}")
    for metric in metrics:
        if metric not in METRICS:
            raise DeepvisError(f"unknown metric '{metric}': choose from {', '.join(METRICS)}")
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
                     saliency or KEY_MOMENT_SALIENCY, seekable, tuple(metrics), metrics_every)


def _unit_settings(config: Config):
    """The live window's unit-image settings: the side column shows what the live one would."""
    return preset(config.units.preset, size=config.units.size, steps=config.units.steps)


def analyze_segment(plan: VideoPlan, segment: int, config: Config, video_part: str | Path,
                    progress: bool = False) -> SegmentResult:
    """Analyse the plan's ``segment``-th stretch of frames; the rendered window frames go to
    ``video_part`` (written under a temporary name first and checked, so a retried segment
    overwrites cleanly)."""
    start_time = time.perf_counter()
    start, stop = plan.segments[segment]
    model = model_from_config(config)
    layer = chosen_layer(model, config.model.layer)
    layout = config.layout
    panes = _Panes(model, layer, config, plan.saliency)
    records, probabilities, features, channel_rows, layer_rows, forward_ms = [], [], [], [], [], []
    patches: TopPatches | None = None
    video_part = Path(video_part)
    video_tmp = video_part.with_name(f".{video_part.stem}.{os.getpid()}.part{video_part.suffix}")
    skipped = 0
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(open_source(plan.source))
        if start > 0:
            source.seek(start)
        analyser = stack.enter_context(make_frame_analyser(model, layers_to_capture(model, layer), config.model.backend,
                                                           provider_choice(config.model.device)))
        video = VideoOutput(video_tmp, plan.fps / plan.every, (layout.width, layout.height), name=video_part)
        stack.callback(video.close)
        stack.callback(video_tmp.unlink, missing_ok=True)  # a no-op once it has been renamed
        bar = stack.enter_context(tqdm(total=_expected_frames(plan, start, stop), unit="frame",
                                       disable=not progress or None, desc=f"analyze {plan.name}"))
        for frame in source:
            skipped = warn_skipped(source, skipped)
            if stop is not None and frame.index >= stop:
                break
            if frame.index % plan.every:
                continue
            result = analyser(frame)
            act = result.activations[layer]
            require_4d(layer, act, model.layers[-1])
            if patches is None and model.module is not None:  # receptive fields need a torch model, not an ONNX file
                patches = TopPatches(receptive_field(model, layer), act.shape[0])
            if patches is not None:
                patches.update(result.view, act, frame.index)
            predictions = top_predictions(result.logits, model.categories, config.display.top_k)
            active = most_active_channels(act, 5)
            status = (f"{plan.name} | {model.name}{' (random weights)' if model.weights == 'random' else ''} | "
                      f"{analyser.provider_label} | {describe_layer(model, layer, act)} | "
                      f"channel {active[0][0]} mean {active[0][1]:.2f} | frame {frame.index} t={frame.timestamp:.2f}s")
            saliency = None
            if plan.saliency is not None and model.module is not None:
                x, target, saliency = top1_saliency(model, result.view, plan.saliency)
            video.write(panes.window(result.view, act, active[0][0], predictions, status, patches, saliency))
            records.append(_record(frame, predictions, result.activations, layer, active))
            if plan.metrics and saliency is not None and (frame.index // plan.every) % plan.metrics_every == 0:
                scores = faithfulness(model.module, x, saliency, target, plan.metrics).values
                records[-1]["saliency_metrics"] = {"method": plan.saliency,
                                                   **{k: round(v, 6) for k, v in scores.items()}}
            probabilities.append(result.logits.float().softmax(-1).cpu().numpy())
            features.append(pooled_features(result.activations[model.layers[-1]]))
            channel_rows.append(act.float().mean(dim=(-2, -1)).cpu().numpy())
            layer_rows.append([records[-1]["layer_means"][name] for name in model.layers])
            forward_ms.append(result.forward_ms)
            bar.update(1)
            if stop is None and plan.max_frames is not None and len(records) >= plan.max_frames:
                break
        warn_skipped(source, skipped)
        if not records:
            raise DeepvisError(f"source {plan.source} delivered no frames")
        video.finish()
        os.replace(video_tmp, video_part)
        backend, skipped_files = analyser.provider_label, skipped_summary(source)
    return SegmentResult(records, np.stack(probabilities).astype(np.float32), np.stack(features),
                         np.stack(channel_rows).astype(np.float32), np.asarray(layer_rows, np.float32),
                         list(model.layers), _compact_patches(patches), forward_ms, str(video_part), backend,
                         time.perf_counter() - start_time, skipped_files)


class _Panes:
    """The annotated video's window for one frame: the live window's panes, with the side column
    (the unit's cached picture and its top-9 so far) and, with a saliency method, its map filling
    the zoom pane under the method's name."""

    def __init__(self, model, layer: str, config: Config, saliency: str | None):
        self.model, self.layer, self.config, self.saliency = model, layer, config, saliency
        self.side, self.zoom = config.layout.panes.get("side"), config.layout.panes.get("zoom")
        self.cache, self.settings = UnitCache(), _unit_settings(config)
        self.synthetic: dict[int, np.ndarray | None] = {}  # channel -> cached unit picture (read once)

    def window(self, view: np.ndarray, act, channel: int, predictions, status: str,
               patches: TopPatches | None, saliency=None) -> np.ndarray:
        """(layout.height, layout.width, 3) uint8 BGR. saliency: the method's raw map when already made."""
        zoom = side = None
        if self.saliency is not None and self.zoom is not None:
            overlay = saliency_overlay(self.model, view, self.saliency, saliency=saliency)
            zoom = labelled_pane(overlay, f"{_method_title(self.saliency)}: {predictions[0].label}",
                                 self.zoom.h, self.zoom.w)
        if self.side is not None:
            if channel not in self.synthetic:
                self.synthetic[channel] = self.cache.get(self.model, self.layer, channel, self.settings)
            crops = [p.image for p in patches.patches(channel)] if patches is not None else []
            side = unit_column(self.synthetic[channel], crops, self.side.h, self.side.w,
                               title=f"{self.layer} ch {channel}")
        content = WindowContent(view, act, channel, predictions, status, side=side, zoom=zoom)
        return render_window(content, self.config.layout, self.config.display)


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


def finish_video(plan: VideoPlan, segments: list[SegmentResult], files: OutputSet, config: Config) -> Path:
    """Write every output of the video into the output set ``files`` (staged; the caller commits it)
    from its segments in order, and remove the segments' video parts; -> the staging folder."""
    from toolbox.jobs.report import build_report

    _join_video_parts([Path(s.video_part) for s in segments], files.path("annotated.mp4"), plan)
    records = [r for s in segments for r in s.records]
    probabilities = np.concatenate([s.probabilities for s in segments])
    times = np.array([r["time"] for r in records], np.float64)
    distances = consecutive_cosine_distances(np.concatenate([s.features for s in segments]))
    threshold = adaptive_threshold(distances)
    shots = shots_from_starts(shot_starts(distances, threshold), len(records))
    model = model_from_config(config)
    layer = records[0]["layer"]
    files.write_text("frames.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    channel_means = np.concatenate([s.channel_means for s in segments])
    np.savez_compressed(files.path(SERIES), times=times, indices=np.array([r["index"] for r in records]),
                        probabilities=probabilities, channel_means=channel_means,
                        layer_means=np.concatenate([s.layer_means for s in segments]),
                        layers=np.array(segments[0].layers), feature_distances=distances,
                        shot_threshold=np.float64(threshold))
    frame_step = plan.every / plan.fps
    duration = (plan.frame_count / plan.fps) if plan.frame_count else float(times[-1] + frame_step)
    analysed = [float(times[0]), min(float(times[-1] + frame_step), duration)]  # --max-frames may stop early
    shot_rows = [_shot_row(shot, records, probabilities, model.categories, frame_step) for shot in shots]
    moments = _write_key_moments(plan, model, shot_rows, records, files)
    if segments[0].patches is not None:
        tracker = TopPatches.merged(receptive_field(model, layer), [s.patches for s in segments], len(records))
        write_top_patches(tracker, files, layer, tile=PATCH_TILE)
    _copy_unit_images(model, layer, most_active_over_time(channel_means, REPORT_UNITS), config, files)
    files.write_json("summary.json", {
        "source": plan.source,
        "model": model.name,
        "weights": str(model.weights),
        "random_weights": model.weights == "random",
        "backend": segments[0].backend,
        "layer": layer,
        "frames_processed": len(records),
        "every": plan.every,
        "skipped": list({item["file"]: item for s in segments for item in s.skipped}.values()),
        "source_fps": plan.fps,
        "source_frames": plan.frame_count,  # None: a stream or camera, its full length unknown
        "duration_s": round(duration, 4),
        "analysed_s": [round(t, 4) for t in analysed],
        "video": {"path": "annotated.mp4", "fps": plan.fps / plan.every, "width": config.layout.width,
                  "height": config.layout.height, "frames": len(records)},
        "top1_counts": dict(collections.Counter(r["top5"][0]["label"] for r in records).most_common()),
        "shots": shot_rows,
        "shot_threshold": round(threshold, 6),
        "key_moments": moments,
        "timing": _timing(segments, len(records)),
        **_metrics_summary(plan, records),
    })
    build_report(files.staging)
    return files.staging


def _metrics_summary(plan: VideoPlan, records: list[dict]) -> dict:
    """summary.json's "saliency_metrics": method, metrics, every, frames scored, mean per metric."""
    if not plan.metrics:
        return {}
    scored = [r["saliency_metrics"] for r in records if "saliency_metrics" in r]
    mean = {k: round(sum(s[k] for s in scored) / len(scored), 6) for k in plan.metrics} if scored else {}
    return {"saliency_metrics": {"method": plan.saliency, "metrics": list(plan.metrics), "every": plan.metrics_every,
                                 "frames": len(scored), "mean": mean}}


def _timing(segments: list[SegmentResult], frames: int) -> dict:
    """The run's speed (the only part of the outputs that differs between identical runs)."""
    forward_ms = [ms for s in segments for ms in s.forward_ms]
    wall = sum(s.wall_s for s in segments)
    return {"mean_forward_ms": round(sum(forward_ms) / len(forward_ms), 3), "worker_s": round(wall, 3),
            "frames_per_second": round(frames / wall, 3) if wall > 0 else None, "segments": len(segments)}


def _shot_row(shot, records: list[dict], probabilities: np.ndarray, categories, frame_step: float) -> dict:
    """summary.json's entry for a shot: start and end (s), dominant class, first, last and key frame."""
    return {"start": round(records[shot.first]["time"], 4),
            "end": round(records[shot.last]["time"] + frame_step, 4),
            "top1": categories[dominant_class(probabilities, shot)],
            "first_frame": records[shot.first]["index"], "last_frame": records[shot.last]["index"],
            "key_frame": records[most_confident_frame(probabilities, shot)]["index"]}


def _join_video_parts(parts: list[Path], final: Path, plan: VideoPlan) -> None:
    """The parts' frames, in order, as one checked video (a single part is moved, not re-encoded);
    the parts are removed."""
    if len(parts) == 1:
        os.replace(parts[0], final)
        return
    size = None
    video = None
    try:
        for part in parts:
            capture = cv2.VideoCapture(str(part))
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                if video is None:
                    size = (image.shape[1], image.shape[0])
                    video = VideoOutput(final, plan.fps / plan.every, size, name=final.name)
                video.write(image)
            capture.release()
        if video is not None:
            video.finish()
    finally:
        if video is not None:
            video.close()
        for part in parts:
            part.unlink(missing_ok=True)


def _write_key_moments(plan: VideoPlan, model, shot_rows: list[dict], records: list[dict],
                       files: OutputSet) -> list[dict]:
    """Per shot, its key frame read again (by seeking), the model view and the saliency overlay of
    its top-1 class as report/moment_NN.png and report/moment_NN_saliency.png; -> the moments' data.
    A source that cannot seek (camera, stream) has no key moments."""
    if not plan.seekable:
        return []
    by_index = {r["index"]: r for r in records}
    moments = []
    with open_source(plan.source) as source:
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
            files.write_image(moment["view"], view)
            if model.module is not None:
                method = plan.moment_saliency
                overlay = saliency_overlay(model, view, method)
                title = f"{_method_title(method)}: {record['top5'][0]['label']}"
                moment["saliency"], moment["method"] = f"report/moment_{n:02d}_saliency.png", _method_title(method)
                files.write_image(moment["saliency"], titled_image(overlay, title, scale=0.4))
            moments.append(moment)
    return moments


def _copy_unit_images(model, layer: str, channels: list[int], config: Config, files: OutputSet) -> None:
    """The cached synthetic images of ``channels`` (the live window's settings) as
    report/units/<channel:04d>.png; channels without a cached image are skipped (never computed)."""
    cache, settings = UnitCache(), _unit_settings(config)
    for c in channels:
        path = cache.path(model, layer, c, settings)
        if path.is_file():
            shutil.copyfile(path, files.path(f"report/units/{c:04d}.png"))


def analyze(source_spec: str, out_dir: str | Path, config: Config, progress: bool = True,
            saliency: str | None = None, segment_seconds: float | None = None, metrics: Sequence[str] = (),
            metrics_every: int = 10) -> AnalyzeOutputs:
    """Analyse one source in this process and write its outputs to ``out_dir`` as one set
    (toolbox.output_set): they appear together when the run completes, none if it fails, and an
    earlier run's outputs are replaced as a whole. Unreadable files of a folder source are skipped
    with a warning and listed in the summary. segment_seconds: analyse the video in stretches of
    this length, one after another, as Ray workers would (the outputs are the same).
    metrics: score the ``saliency`` map on every ``metrics_every``-th processed frame: those frames'
    frames.jsonl records get "saliency_metrics" {"method", metric: value}, summary.json gets
    "saliency_metrics" {"method", "metrics", "every", "frames" (scored), "mean" {metric: value}}."""
    out_dir = check_output_folder(check_folder_name(out_dir, "analyze", "report.html, annotated.mp4, frames.jsonl, "
                                                    "summary.json"), "analyze")
    plan = plan_video(source_spec, config, saliency, segment_seconds, metrics, metrics_every)
    check_model_options(config, saliency)
    with user_write_errors(out_dir), OutputSet(out_dir, "analyze") as files:
        segments = [analyze_segment(plan, i, config, files.path(f"{PARTS}/{i:04d}.mp4"), progress)
                    for i in range(len(plan.segments))]
        finish_video(plan, segments, files, config)
        shutil.rmtree(files.path(PARTS), ignore_errors=True)
    return analyze_outputs(out_dir)
