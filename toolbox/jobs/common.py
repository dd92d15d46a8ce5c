"""Pieces every job shares: building the model from the config, picking the layer, status text."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.models.registry import LoadedModel, load_model, resolve_device

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def warn_skipped(source, already: int) -> int:
    """Print a warning on stderr for each file ``source`` skipped since the first ``already``; -> the new count."""
    skipped = source.skipped
    for item in skipped[already:]:
        print(f"deepvis: warning: skipped {item.path}: {item.reason}", file=sys.stderr)
    return len(skipped)


def skipped_summary(source) -> list[dict]:
    """[{"file": name, "reason": one line}] for the files ``source`` skipped (for a job's summary)."""
    return [{"file": str(item.path), "reason": item.reason} for item in source.skipped]


def check_max_frames(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise DeepvisError(f"--max-frames must be 1 or more, not {value}: leave it out for every frame")
    return value


def check_folder_name(out: str | Path, job: str, writes: str) -> Path:
    """``out`` as the job's output folder; a name with a media suffix (out.mp4, out.png) is refused as a
    kind mismatch, since the job writes a folder."""
    from toolbox.sources.images import IMAGE_SUFFIXES

    out = Path(out)
    if out.suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES and not out.is_dir():
        raise DeepvisError(f"--out {out} names a {out.suffix} file, but deepvis {job} writes a folder ({writes}): "
                           "give a folder name")
    return out


def model_from_config(config: Config) -> LoadedModel:
    m = config.model
    for option, path in (("--labels", m.labels), ("--preprocess", m.preprocess)):
        if path is not None and not Path(path).is_file():
            raise DeepvisError(f"{option} file not found: {path} (check the path)")
    return load_model(m.name, weights=m.weights, device=resolve_device(m.device), channels_last=m.channels_last,
                      labels=m.labels, preprocess=m.preprocess)


def default_layer(model: LoadedModel) -> str:
    """The middle visualisable layer: neither edges nor whole objects, the most telling mosaic."""
    return model.layers[len(model.layers) // 2]


def chosen_layer(model: LoadedModel, requested: str | None) -> str:
    if requested is None:
        return default_layer(model)
    if requested.isdigit() and int(requested) < len(model.layers):
        return model.layers[int(requested)]
    model.check_layer(requested)
    return requested


def layers_to_capture(model: LoadedModel, layer: str) -> list[str]:
    """The visualisable layers plus the chosen one if it is not among them."""
    return model.layers if layer in model.layers else [*model.layers, layer]


def describe_layer(model: LoadedModel, layer: str, act: torch.Tensor) -> str:
    position = f"{model.layers.index(layer) + 1}/{len(model.layers)} " if layer in model.layers else ""
    return f"layer {position}{layer} {tuple(act.shape)}"


def require_4d(layer: str, act: torch.Tensor, example: str | None = None) -> None:
    """Refuse a layer whose activation (one image's) is not a (C, H, W) feature map, naming
    ``example`` (a layer that is one) when given."""
    if act.dim() != 3:
        named = f", e.g. '{example}'" if example else ""
        raise DeepvisError(
            f"layer '{layer}' outputs shape {tuple(act.shape)}, not a (C, H, W) feature map: pick a convolutional "
            f"layer{named} (deepvis layers)"
        )
