"""deepvis dream: DeepDream an image, a folder of images or a video, headless, with a progress bar.

Images go through ``dream()`` with the preset's octaves; video frames go through ``LiveDreamer``
(the same schedule per frame, seeded by the previous dream warped along the optical flow) so the
dream moves with the scene instead of flickering. Every output is written atomically.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from toolbox.analysis.dream import DreamEngine, DreamSettings, LayerTerm, LiveDreamer, default_layers, dream, preset
from toolbox.atomic import atomic_path, write_image
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import model_from_config
from toolbox.models.registry import LoadedModel
from toolbox.sources import open_source, read_image
from toolbox.sources.images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class DreamOptions:
    """What the command line can change; None keeps the preset's value."""

    preset: str = "classic"
    layers: str | None = None  # "name[:weight[:kind[:index]]],..." or visualisable-layer indices
    octaves: int | None = None
    scale: float | None = None
    steps: int | None = None
    step_size: float | None = None  # in grey levels of 255 (classic: 1.5)
    tile: int | None = None
    seed: int | None = None
    blend: float = 0.9  # video: how much of the previous frame's dream is carried
    max_frames: int | None = None


def parse_layers(spec: str, model: LoadedModel, default_kind: str) -> tuple[LayerTerm, ...]:
    """'_blocks.8' | '_blocks.5:1,_blocks.8:2' | '8:1:channel:12' | 'logits:1:logit:281' -> terms."""
    terms = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, *rest = item.split(":")
        if name.isdigit():
            if int(name) >= len(model.layers):
                raise DeepvisError(f"layer index {name} out of range: 0..{len(model.layers) - 1} (deepvis layers)")
            name = model.layers[int(name)]
        try:
            weight = float(rest[0]) if rest else 1.0
            index = int(rest[2]) if len(rest) > 2 else None
        except ValueError:
            raise DeepvisError(f"cannot read --layers item '{item}': use name[:weight[:kind[:index]]]") from None
        kind = rest[1] if len(rest) > 1 else default_kind
        terms.append(LayerTerm(name, weight, kind, index))
    if not terms:
        raise DeepvisError("--layers is empty: name at least one layer (deepvis layers)")
    return tuple(terms)


def dream_settings(model: LoadedModel, options: DreamOptions, layer: str | None = None) -> DreamSettings:
    """The preset, with the user's layers (or ``layer``, or the preset's default) and overrides."""
    base = preset(options.preset)
    changes = {key: value for key, value in {
        "octaves": options.octaves, "scale": options.scale, "steps": options.steps, "tile": options.tile,
        "seed": options.seed,
        "step_size": None if options.step_size is None else options.step_size / 255.0,
    }.items() if value is not None}
    settings = base.replace(**changes)
    if options.layers:
        return settings.with_layers(parse_layers(options.layers, model, settings.term))
    return settings.with_layers([layer] if layer else default_layers(options.preset, model.name, model.layers))


def _torch_model(config: Config) -> LoadedModel:
    model = model_from_config(config)
    if getattr(model, "module", None) is None:
        raise DeepvisError("dreaming needs gradients: use a PyTorch model (--backend torch), not an ONNX graph")
    return model


def _image_output(source: Path, out: Path, many: bool) -> Path:
    if many:
        return out / f"{source.stem}-dream.png"
    if out.suffix.lower() in IMAGE_SUFFIXES:
        return out
    return out / f"{source.stem}-dream.png"


def run_dream(input_spec: str, out: str | Path, config: Config, options: DreamOptions,
              progress: bool = True) -> list[Path]:
    """Dream INPUT (image, folder of images, or video) into OUT; returns the files written.

    Image -> OUT if it has an image suffix, else OUT/<name>-dream.png; folder -> OUT/<name>-dream.png
    per image; video -> OUT (an .mp4 path, or OUT/<name>-dream.mp4).
    """
    out = Path(out)
    path = Path(input_spec)
    model = _torch_model(config)
    settings = dream_settings(model, options, config.model.layer)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DeepvisError(f"no images in folder {path} (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        return _dream_images(images, out, model, settings, progress, many=True)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        read_image(path)  # a missing or broken file is a one-line error before any work
        return _dream_images([path], out, model, settings, progress, many=False)
    return [_dream_video(input_spec, out, model, settings, options, progress)]


def _dream_images(images: list[Path], out: Path, model: LoadedModel, settings: DreamSettings, progress: bool,
                  many: bool) -> list[Path]:
    written = []
    with DreamEngine(model, settings) as engine, tqdm(total=len(images) * settings.total_steps, unit="step",
                                                      desc="dream", disable=not progress or None) as bar:
        for image_path in images:
            image = read_image(image_path)
            result = dream(image, model, settings, progress=lambda p: bar.update(1), engine=engine)
            written.append(write_image(_image_output(image_path, out, many), result.image))
    return written


def _dream_video(spec: str, out: Path, model: LoadedModel, settings: DreamSettings, options: DreamOptions,
                 progress: bool) -> Path:
    source = open_source(spec)
    if source.live:
        source.close()
        raise DeepvisError("deepvis dream takes a file, folder or video; for a camera use 'deepvis live' and its dream keys")
    target = out if out.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv") else out / f"{Path(spec).stem}-dream.mp4"
    total = source.frame_count
    if options.max_frames is not None:
        total = options.max_frames if total is None else min(total, options.max_frames)
    done = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(source)
        dreamer = LiveDreamer(model, settings, blend=options.blend)
        stack.callback(dreamer.close)
        tmp = stack.enter_context(atomic_path(target))
        bar = stack.enter_context(tqdm(total=total, unit="frame", desc="dream", disable=not progress or None))
        writer = None
        for frame in source:
            dreamed = dreamer.step(frame.image)
            if writer is None:
                h, w = dreamed.shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*("MJPG" if target.suffix.lower() == ".avi" else "mp4v"))
                writer = cv2.VideoWriter(str(tmp), fourcc, source.fps or 30.0, (w, h))
                if not writer.isOpened():
                    raise DeepvisError(f"cannot write video {target}: check the folder and the suffix (.mp4)")
                stack.callback(writer.release)
            writer.write(dreamed)
            done += 1
            bar.update(1)
            if options.max_frames is not None and done >= options.max_frames:
                break
        if done == 0:
            raise DeepvisError(f"video {spec} delivered no frames")
    return target
