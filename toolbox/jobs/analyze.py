"""deepvis analyze: run a source through the model and write an annotated video plus per-frame data."""
from __future__ import annotations

import collections
import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from toolbox.analysis.activations import layer_means, most_active_channels, top_predictions
from toolbox.analysis.backend_choice import make_frame_analyser, provider_choice
from toolbox.analysis.top_patches import TopPatches
from toolbox.atomic import atomic_path, write_json
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import chosen_layer, describe_layer, layers_to_capture, model_from_config, require_4d
from toolbox.jobs.saliency_maps import check_saliency_choice, saliency_overlay
from toolbox.jobs.units import write_top_patches
from toolbox.models.receptive_field import receptive_field
from toolbox.render.window import WindowContent, render_window
from toolbox.sources import open_source


@dataclass(frozen=True)
class AnalyzeOutputs:
    video: Path
    frames: Path
    summary: Path


def analyze(source_spec: str, out_dir: str | Path, config: Config, progress: bool = True,
            saliency: str | None = None) -> AnalyzeOutputs:
    """Write ``out_dir``/annotated.mp4, frames.jsonl and summary.json. Nothing is written under the
    final names unless the run completes."""
    out_dir = Path(out_dir)
    outputs = AnalyzeOutputs(out_dir / "annotated.mp4", out_dir / "frames.jsonl", out_dir / "summary.json")
    # Everything that can fail on user input is checked before the first byte is written.
    source = open_source(source_spec)
    model = model_from_config(config)
    layer = chosen_layer(model, config.model.layer)
    if saliency is not None:  # the method's heatmap over the input replaces the zoom pane
        check_saliency_choice(model, saliency)
    every, limit = config.analyze.every, config.analyze.max_frames
    if every < 1:
        raise DeepvisError("analyze.every must be 1 or more")
    layout, display = config.layout, config.display
    fps = (source.fps or 30.0) / every
    total = source.frame_count
    expected = None if total is None else (total + every - 1) // every
    if limit is not None and expected is not None:
        expected = min(expected, limit)

    top1 = collections.Counter()
    forward_ms = []
    patches = None  # TopPatches for the layer, made at the first frame (needs the channel count)
    processed = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(source)
        analyser = stack.enter_context(make_frame_analyser(model, layers_to_capture(model, layer), config.model.backend,
                                                           provider_choice(config.model.device)))
        video_tmp = stack.enter_context(atomic_path(outputs.video))
        frames_tmp = stack.enter_context(atomic_path(outputs.frames))
        writer = cv2.VideoWriter(str(video_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (layout.width, layout.height))
        if not writer.isOpened():
            raise DeepvisError(f"cannot write video {outputs.video}: check that the folder is writable")
        stack.callback(writer.release)
        records = stack.enter_context(open(frames_tmp, "w"))
        bar = stack.enter_context(tqdm(total=expected, unit="frame", disable=not progress or None, desc="analyze"))
        for frame in source:
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
            status = (f"{source.name} | {model.name} | {analyser.provider_label} | {describe_layer(model, layer, act)} | "
                      f"channel {channel} mean {active[0][1]:.2f} | frame {frame.index} t={frame.timestamp:.2f}s")
            zoom = saliency_overlay(model, result.view, saliency) if saliency is not None else None
            window = render_window(WindowContent(result.view, act, channel, predictions, status, zoom=zoom), layout, display)
            writer.write(window)
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
        if processed == 0:
            raise DeepvisError(f"source {source_spec} delivered no frames")
    if patches is not None:
        write_top_patches(patches, out_dir, layer)
    write_json(outputs.summary, {
        "source": source_spec,
        "model": model.name,
        "weights": model.weights,
        "backend": analyser.provider_label,
        "layer": layer,
        "frames_processed": processed,
        "every": every,
        "video": {"path": outputs.video.name, "fps": fps, "width": layout.width, "height": layout.height},
        "top1_counts": dict(top1.most_common()),
        "mean_forward_ms": round(sum(forward_ms) / len(forward_ms), 3),
    })
    return outputs
