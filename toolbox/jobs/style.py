"""deepvis texture / style: Gatys texture synthesis and style transfer, headless.

texture: a texture of --size from seeded noise, with the style image's Gram matrices.
style: an image, each image of a folder, or a video. A video's frames after the first start from
the previous stylised frame warped along the optical flow (occlusions from the new frame), so
the style stays on the objects instead of flickering. Every output is written atomically.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from toolbox.analysis.dream.core import bgr_to_rgb01, rgb01_to_bgr
from toolbox.analysis.style import STYLE_SIDE, LiveStylist, StyleSettings, Stylist
from toolbox.atomic import user_write_errors, write_image
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import VIDEO_SUFFIXES, check_max_frames
from toolbox.jobs.dream import _output_kind, map_video, working_size
from toolbox.jobs.invert import torch_model
from toolbox.output_set import OutputSet, check_output_folder
from toolbox.sources import read_image
from toolbox.sources.images import IMAGE_SUFFIXES

DEFAULT_MAX_SIDE = 512
SIZE_RATIO_NOTE = 2.0  # content and style long sides further apart than this are noted


@dataclass
class StyleRun:
    written: list[Path]
    notes: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)


def read_style(spec: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR style image, or a one-line error (missing, not an image, a folder)."""
    path = Path(spec)
    if path.is_dir():
        images = sorted(p.name for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DeepvisError(f"no style images in folder {path} (expected {', '.join(sorted(IMAGE_SUFFIXES))}): "
                               "add some, or name one image with --style")
        raise DeepvisError(f"--style {path} is a folder: name one image of it (e.g. {path / images[0]})")
    return read_image(path)


def style_settings(model, steps=None, style_weight=None, content_weight=None, layers=None, seed=None,
                   octaves=None, tv_weight=None, video_steps=None) -> StyleSettings:
    names = None
    if layers:
        names = []
        for item in filter(None, (s.strip() for s in layers.split(","))):
            if item.isdigit():
                if int(item) >= len(model.layers):
                    raise DeepvisError(f"layer index {item} out of range: 0..{len(model.layers) - 1} (deepvis layers)")
                item = model.layers[int(item)]
            names.append(item)
        names = tuple(names)
    for name, value in (("--steps", steps), ("--octaves", octaves), ("--video-steps", video_steps)):
        if value is not None and value < 1:
            raise DeepvisError(f"{name} must be 1 or more, not {value}")
    for name, value in (("--style-weight", style_weight), ("--content-weight", content_weight), ("--tv-weight", tv_weight)):
        if value is not None and value < 0:
            raise DeepvisError(f"{name} must be 0 or more, not {value}")
    return StyleSettings().replace(steps=steps, style_weight=style_weight, content_weight=content_weight,
                                   layers=names, seed=seed, octaves=octaves, tv_weight=tv_weight)


def _size_note(content_shape, style_shape) -> str | None:
    c, s = max(content_shape[:2]), max(style_shape[:2])
    if max(c, s) / max(1, min(c, s)) <= SIZE_RATIO_NOTE:
        return None
    used = min(s, STYLE_SIDE)
    return (f"content ({content_shape[1]}x{content_shape[0]}) and style ({style_shape[1]}x{style_shape[0]}) differ "
            f"much in size: the style is used at {used} px on its long side, the content at its working size; "
            "resize one of them if the style's strokes look too coarse or too fine")


def run_texture(style_spec: str, out: str | Path, config: Config, size: int = 256,
                settings_changes: dict | None = None, progress: bool = True) -> StyleRun:
    out = Path(out)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise DeepvisError(f"--out {out} is not an image name: give a .png path")
    if size < 32:
        raise DeepvisError(f"--size must be at least 32 pixels, not {size}")
    if out.is_dir():
        raise DeepvisError(f"--out {out} is a folder: give a .png path")
    style = read_style(style_spec)
    model = torch_model(config, "texture synthesis")
    settings = style_settings(model, **(settings_changes or {}))
    if settings.octaves == StyleSettings().octaves and "octaves" not in (settings_changes or {}):
        settings = settings.replace(octaves=3)  # coarse to fine: large structures first
    with Stylist(model, bgr_to_rgb01(style, model.device), settings) as stylist, \
            tqdm(total=settings.steps * settings.octaves, unit="step", desc="texture", disable=not progress or None) as bar:
        result = stylist.texture(size, size, progress=lambda p: bar.update(1))
    with user_write_errors(out):
        write_image(out, rgb01_to_bgr(result.rgb))
    return StyleRun([out], [f"{note}, resized back to {size}x{size}" for note in result.fallbacks])


def run_style(input_spec: str, style_spec: str, out: str | Path, config: Config, settings_changes: dict | None = None,
              max_side: int | None = DEFAULT_MAX_SIDE, max_frames: int | None = None, video_steps: int | None = None,
              progress: bool = True) -> StyleRun:
    """Stylise INPUT (image, folder, video) with STYLE into OUT (image/video path or folder)."""
    check_max_frames(max_frames)
    out = Path(out)
    path = Path(input_spec)
    kind = "folder" if path.is_dir() else "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    _output_kind(path, out, kind)
    style = read_style(style_spec)
    images = []
    if kind == "folder":
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DeepvisError(f"no images in folder {path} (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        check_output_folder(out)
    elif kind == "image":
        read_image(path)
    model = torch_model(config, "style transfer")
    settings = style_settings(model, video_steps=video_steps, **(settings_changes or {}))
    run = StyleRun([])
    with Stylist(model, bgr_to_rgb01(style, model.device), settings) as stylist:
        if kind == "video":
            run.written.append(_style_video(input_spec, out, stylist, style.shape, max_side, max_frames, video_steps,
                                            progress, run))
            return run
        if kind == "image":
            target = out if out.suffix.lower() in IMAGE_SUFFIXES else out / f"{path.stem}-style.png"
            styled = _style_image(read_image(path), stylist, style.shape, max_side, run, progress)
            with user_write_errors(target):
                run.written.append(write_image(target, styled))
            return run
        with user_write_errors(out), OutputSet(out, "style") as files:
            for image_path in images:
                try:
                    image = read_image(image_path)
                except DeepvisError as error:
                    print(f"deepvis: warning: skipped {image_path}: {error}", file=sys.stderr)
                    run.skipped.append({"file": str(image_path), "reason": str(error)})
                    continue
                run.written.append(files.write_image(f"{image_path.stem}-style.png",
                                                     _style_image(image, stylist, style.shape, max_side, run, progress)))
            if not run.written:
                raise DeepvisError(f"no readable image among the {len(images)} files: all are damaged or not images")
        run.written = [files.final_path(p.name) for p in run.written]
    return run


def _note(run: StyleRun, note: str | None) -> None:
    if note and note not in run.notes:
        run.notes.append(note)


def _style_image(image, stylist: Stylist, style_shape, max_side, run: StyleRun, progress: bool):
    h, w = image.shape[:2]
    wh, ww = working_size(h, w, max_side)
    work = cv2.resize(image, (ww, wh), interpolation=cv2.INTER_AREA) if (wh, ww) != (h, w) else image
    if (wh, ww) != (h, w):
        _note(run, f"stylised at {ww}x{wh} (--max-side {max_side}; 0 for full size), resized back to {w}x{h}")
    _note(run, _size_note(work.shape, style_shape))
    with tqdm(total=stylist.settings.steps, unit="step", desc="style", disable=not progress or None) as bar:
        result = stylist.stylise(bgr_to_rgb01(work, stylist.model.device), progress=lambda p: bar.update(1))
    for note in result.fallbacks:
        _note(run, f"{note}, resized back to {w}x{h}")
    styled = rgb01_to_bgr(result.rgb)
    return cv2.resize(styled, (w, h), interpolation=cv2.INTER_CUBIC) if styled.shape != image.shape else styled


def _style_video(spec: str, out: Path, stylist: Stylist, style_shape, max_side, max_frames, video_steps,
                 progress: bool, run: StyleRun) -> Path:
    target = out if out.suffix.lower() in VIDEO_SUFFIXES else out / f"{Path(spec).stem}-style.mp4"
    steps = video_steps if video_steps is not None else max(1, stylist.settings.steps // 3)

    stylers: list[LiveStylist] = []

    def styler_for(first, stack):
        _note(run, _size_note(first.shape, style_shape))
        stylers.append(LiveStylist(stylist, steps=steps, max_side=max_side or None))
        return stylers[-1].step

    written = map_video(spec, target, styler_for, max_frames, progress, "style",
                        "deepvis style takes a file, folder or video; for a camera use 'deepvis live' and its Y key")
    for note in (note for styler in stylers for note in styler.fallbacks):
        _note(run, f"{note} (that frame and the following ones), resized back to the video's size")
    return written
