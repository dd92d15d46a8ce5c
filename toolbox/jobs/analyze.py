"""deepvis analyze: run a source through the model and write an annotated video plus per-frame data."""
from __future__ import annotations

import collections
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from toolbox.analysis.activations import layer_means, most_active_channels, top_predictions
from toolbox.analysis.backend_choice import make_frame_analyser, provider_choice
from toolbox.analysis.top_patches import TopPatches
from toolbox.atomic import user_write_errors
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import (check_folder_name, check_max_frames, chosen_layer, describe_layer, layers_to_capture,
                                 model_from_config, require_4d, skipped_summary, warn_skipped)
from toolbox.jobs.saliency_maps import check_saliency_choice, saliency_overlay
from toolbox.jobs.units import write_top_patches
from toolbox.models.receptive_field import receptive_field
from toolbox.output_set import OutputSet, check_output_folder
from toolbox.render.window import WindowContent, render_window
from toolbox.sources import open_source
from toolbox.video_file import VideoOutput


@dataclass(frozen=True)
class AnalyzeOutputs:
    video: Path
    frames: Path
    summary: Path


def analyze(source_spec: str, out_dir: str | Path, config: Config, progress: bool = True,
            saliency: str | None = None) -> AnalyzeOutputs:
    """Write ``out_dir``/annotated.mp4, frames.jsonl, summary.json and top_patches/ as one output set
    (toolbox.output_set): all of them appear when the run completes, none if it fails, and an
    earlier run's outputs in ``out_dir`` are replaced as a whole. Unreadable files of a folder
    source are skipped with a warning and listed in the summary."""
    out_dir = check_output_folder(check_folder_name(out_dir, "analyze", "annotated.mp4, frames.jsonl, summary.json"),
                                  "analyze")
    outputs = AnalyzeOutputs(out_dir / "annotated.mp4", out_dir / "frames.jsonl", out_dir / "summary.json")
    # Everything that can fail on user input is checked before the first byte is written.
    every, limit = config.analyze.every, check_max_frames(config.analyze.max_frames)
    if every < 1:
        raise DeepvisError(f"--every must be 1 or more, not {every}")
    source = open_source(source_spec)
    with source:
        model = model_from_config(config)
        layer = chosen_layer(model, config.model.layer)
        if saliency is not None:  # the method's heatmap over the input replaces the zoom pane
            check_saliency_choice(model, saliency)
        with user_write_errors(out_dir), OutputSet(out_dir, "analyze") as files:
            summary = _analyze_into(files, source, source_spec, model, layer, config, progress, saliency, outputs)
            files.write_json(outputs.summary.name, summary)
    return outputs


def _analyze_into(files: OutputSet, source, source_spec: str, model, layer: str, config: Config, progress: bool,
                  saliency: str | None, outputs: AnalyzeOutputs) -> dict:
    """Run the frames, writing the video, frames.jsonl and top patches into ``files``; -> the summary."""
    every, limit = config.analyze.every, config.analyze.max_frames
    layout, display = config.layout, config.display
    fps = (source.fps or 30.0) / every
    total = source.frame_count
    expected = None if total is None else (total + every - 1) // every
    if limit is not None and expected is not None:
        expected = min(expected, limit)

    top1 = collections.Counter()
    forward_ms = []
    patches = None  # TopPatches for the layer, made at the first frame (needs the channel count)
    processed = skipped = 0
    with contextlib.ExitStack() as stack:
        analyser = stack.enter_context(make_frame_analyser(model, layers_to_capture(model, layer), config.model.backend,
                                                           provider_choice(config.model.device)))
        video = VideoOutput(files.path(outputs.video.name), fps, (layout.width, layout.height), name=outputs.video)
        stack.callback(video.close)
        records = stack.enter_context(open(files.path(outputs.frames.name), "w"))
        bar = stack.enter_context(tqdm(total=expected, unit="frame", disable=not progress or None, desc="analyze"))
        for frame in source:
            skipped = warn_skipped(source, skipped)
            if frame.index % every:
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
            status = (f"{source.name} | {model.name}{' (random weights)' if model.weights == 'random' else ''} | "
                      f"{analyser.provider_label} | {describe_layer(model, layer, act)} | "
                      f"channel {channel} mean {active[0][1]:.2f} | frame {frame.index} t={frame.timestamp:.2f}s")
            zoom = saliency_overlay(model, result.view, saliency) if saliency is not None else None
            window = render_window(WindowContent(result.view, act, channel, predictions, status, zoom=zoom), layout, display)
            video.write(window)
            record = {
                "index": frame.index,
                "time": round(frame.timestamp, 4),
                "top5": [{"index": p.index, "label": p.label, "probability": round(p.probability, 6)}
                         for p in predictions],
                "layer_means": {k: round(v, 6) for k, v in layer_means(result.activations).items()},
                "layer": layer,
                "top_channels": [{"channel": c, "mean": round(v, 6)} for c, v in active],
            }
            records.write(json.dumps(record) + "\n")
            top1[predictions[0].label] += 1
            forward_ms.append(result.forward_ms)
            processed += 1
            bar.update(1)
            if limit is not None and processed >= limit:
                break
        warn_skipped(source, skipped)
        if processed == 0:
            raise DeepvisError(f"source {source_spec} delivered no frames")
        records.close()
        video.finish()
        provider = analyser.provider_label
    if patches is not None:
        write_top_patches(patches, files, layer)
    return {
        "source": source_spec,
        "model": model.name,
        "weights": model.weights,
        "random_weights": model.weights == "random",
        "backend": provider,
        "layer": layer,
        "frames_processed": processed,
        "every": every,
        "skipped": skipped_summary(source),
        "video": {"path": outputs.video.name, "fps": fps, "width": layout.width, "height": layout.height,
                  "frames": video.frames},
        "top1_counts": dict(top1.most_common()),
        "mean_forward_ms": round(sum(forward_ms) / len(forward_ms), 3),
    }
