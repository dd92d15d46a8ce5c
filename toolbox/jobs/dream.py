"""deepvis dream: DeepDream an image, a folder of images or a video, headless, with a progress bar.

Images go through ``dream()`` with the preset's octaves; video frames go through ``LiveDreamer``
(the same schedule per frame, seeded by the previous dream warped along the optical flow) so the
dream moves with the scene instead of flickering.

Size: the dream is computed with the long side at most ``--max-side`` (default 1024) and resized
back, and the output says so; the octave count is bounded for that size (bounded_octaves). Files:
one image or video is written atomically (a video only after its frames are counted back), a
folder's dreams as one output set (toolbox.output_set); unreadable images of a folder are skipped
with a warning and listed.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from toolbox.analysis.dream import DreamEngine, DreamSettings, LayerTerm, LiveDreamer, default_layers, dream, preset
from toolbox.analysis.optimise.octaves import detail_sizes, resize_sizes
from toolbox.atomic import atomic_path, user_write_errors, write_image
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import VIDEO_SUFFIXES, check_max_frames, model_from_config
from toolbox.models.receptive_field import receptive_field
from toolbox.models.registry import LoadedModel
from toolbox.output_set import OutputSet, check_output_folder
from toolbox.sources import open_source, read_image
from toolbox.sources.images import IMAGE_SUFFIXES
from toolbox.video_file import VideoOutput

DEFAULT_MAX_SIDE = 1024  # pixels: a 4000x3000 photo at full size needs ~10 GB and half an hour on a CPU
MAX_LEVEL_RATIO = 4  # the largest octave at most this many times the image's long side


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
    max_side: int | None = DEFAULT_MAX_SIDE  # long side the dream is computed at (resized back); 0 or None: full size


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


def _image_output(source: Path, out: Path) -> Path:
    """OUT itself if it has an image suffix, else OUT/<name>-dream.png."""
    return out if out.suffix.lower() in IMAGE_SUFFIXES else out / f"{source.stem}-dream.png"


def check_options(options: DreamOptions) -> None:
    """Refuse option values that have no meaning, in the units of ``deepvis dream --help``."""
    if options.step_size is not None and not options.step_size > 0:
        raise DeepvisError(f"--step-size must be positive, in grey levels of 255 (e.g. 1.5), not {options.step_size}")
    if options.max_side is not None and options.max_side < 0:
        raise DeepvisError(f"--max-side must be 0 (full size) or a number of pixels like {DEFAULT_MAX_SIDE}")
    check_max_frames(options.max_frames)


def check_term_indices(model: LoadedModel, settings: DreamSettings) -> None:
    """A logit objective's class index within the model's classes, a channel objective's within its layer."""
    for term in settings.terms:
        if term.kind == "logit" and not 0 <= term.channel < len(model.categories):
            raise DeepvisError(f"logit {term.channel} out of range: {model.name} has {len(model.categories)} classes "
                               f"(0..{len(model.categories) - 1})")
        if term.kind == "channel":
            (info,) = model.layer_infos([term.layer])
            if not 0 <= term.channel < info.channels:
                raise DeepvisError(f"channel {term.channel} out of range: layer '{term.layer}' has {info.channels} "
                                   f"channels (0..{info.channels - 1})")


def octave_levels(settings: DreamSettings, height: int, width: int) -> list[tuple[int, int]]:
    """(H, W) of every octave the settings dream an image of this size at, smallest first."""
    if settings.family == "detail":
        return detail_sizes(height, width, settings.octaves, settings.scale)
    return resize_sizes(height, width, settings.first_octave, settings.first_octave + settings.octaves - 1,
                        settings.scale)


def dream_field(model: LoadedModel, settings: DreamSettings) -> tuple[str, int] | None:
    """(layer, long side in pixels) of the smallest receptive field among the spatial terms; None for logits only."""
    fields = [(layer, max(receptive_field(model, layer).size))
              for layer in dict.fromkeys(t.layer for t in settings.terms if t.kind != "logit")]
    return min(fields, key=lambda f: f[1], default=None)


def bounded_octaves(settings: DreamSettings, height: int, width: int, field: tuple[str, int] | None,
                    explicit: bool) -> DreamSettings:
    """The settings with an octave count that fits an image of this (working) size.

    Below the receptive field of the dream layer (``field``: dream_field) every unit sees the
    whole level, mostly padding: the first such level still gives the whole-image view, further
    ones shrink the image to a few units, so at most one level may be smaller than the field
    (long sides compared). The largest level may
    be at most MAX_LEVEL_RATIO times the image (the resize family grows past the image). An
    ``explicit`` --octaves that breaks either bound is refused, naming the largest count that
    fits; the preset's own count is lowered to it.
    """
    fits, too_large = 0, False
    for count in range(1, settings.octaves + 1):
        levels = octave_levels(settings.replace(octaves=count), height, width)
        below = sum(max(level) < field[1] for level in levels) if field is not None else 0
        too_large = max(levels[-1]) > MAX_LEVEL_RATIO * max(height, width)
        if count > 1 and (below > 1 or too_large):
            break
        fits = count
    if fits == settings.octaves:
        return settings
    if explicit:
        reason = (f"the largest octave would exceed {MAX_LEVEL_RATIO}x the image" if too_large or field is None else
                  f"more than one octave would be smaller than {field[1]} px, the receptive field of {field[0]}")
        raise DeepvisError(f"--octaves {settings.octaves} does not fit a {width}x{height} image: {reason}; "
                           f"use --octaves {fits} or fewer")
    return settings.replace(octaves=fits)


def working_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(H, W) the dream is computed at: the long side cut to ``max_side`` (0 or None: full size)."""
    if not max_side or max(height, width) <= max_side:
        return height, width
    k = max_side / max(height, width)
    return max(1, round(height * k)), max(1, round(width * k))


def _output_kind(input_path: Path, out: Path, kind: str) -> None:
    """Refuse an --out that names the input itself, or a file of the other kind (an .mp4 for an image)."""
    with contextlib.suppress(OSError):
        if out.resolve() == input_path.resolve():
            raise DeepvisError(f"--out {out} is the input itself: give another name, the input is never overwritten")
    suffix = out.suffix.lower()
    if kind == "image" and suffix in VIDEO_SUFFIXES:
        raise DeepvisError(f"--out {out} is a video name, but {input_path} is an image: give an image name "
                           f"(.png, .jpg) or a folder")
    if kind == "video" and suffix in IMAGE_SUFFIXES:
        raise DeepvisError(f"--out {out} is an image name, but {input_path} is a video: give a video name "
                           f"(.mp4, .avi) or a folder")
    if kind == "folder" and suffix in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
        raise DeepvisError(f"--out {out} names a {suffix} file, but {input_path} is a folder: give a folder name")


@dataclass
class DreamRun:
    """What a dream run wrote and what it had to skip."""

    written: list[Path]
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason"} of unreadable images of a folder
    notes: list[str] = field(default_factory=list)  # what the job changed on its own (size cap, octave count)


def run_dream(input_spec: str, out: str | Path, config: Config, options: DreamOptions,
              progress: bool = True) -> DreamRun:
    """Dream INPUT (image, folder of images, or video) into OUT.

    Image -> OUT if it has an image suffix, else OUT/<name>-dream.png; folder -> OUT/<name>-dream.png
    per image, written as one output set (toolbox.output_set; unreadable images are skipped with a
    warning); video -> OUT (an .mp4/.avi path, or OUT/<name>-dream.mp4). Dreams are computed with the
    long side at most ``options.max_side`` and resized back to the input size.
    """
    check_options(options)
    out = Path(out)
    path = Path(input_spec)
    kind = "folder" if path.is_dir() else "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    _output_kind(path, out, kind)
    if kind == "folder":
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DeepvisError(f"no images in folder {path} (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        if not any(cv2.haveImageReader(str(p)) for p in images):  # the header alone tells most bad files
            raise DeepvisError(f"no readable image in {path}: all {len(images)} files are damaged or not images "
                               "(use PNG or JPEG)")
        check_output_folder(out, "dream")
    elif kind == "image":
        read_image(path)  # a missing or broken file is a one-line error before any work
    model = _torch_model(config)
    settings = dream_settings(model, options, config.model.layer)
    check_term_indices(model, settings)
    run = DreamRun([])
    if kind == "folder":
        with user_write_errors(out), OutputSet(out, "dream") as files:
            _dream_images(images, files, model, settings, options, progress, run)
        run.written = [files.final_path(p.name) for p in run.written]
        return run
    if kind == "image":
        _dream_images([path], None, model, settings, options, progress, run, out=_image_output(path, out))
        return run
    run.written.append(_dream_video(input_spec, out, model, settings, options, progress, run))
    return run


def _prepared(image: np.ndarray, settings: DreamSettings, field: tuple[str, int] | None, options: DreamOptions,
              run: DreamRun) -> tuple[np.ndarray, DreamSettings]:
    """The image at its working size and the settings bounded for it; notes what was changed."""
    h, w = image.shape[:2]
    wh, ww = working_size(h, w, options.max_side)
    if (wh, ww) != (h, w):
        image = cv2.resize(image, (ww, wh), interpolation=cv2.INTER_AREA)
        note = (f"dreamed at {ww}x{wh} (the long side cut to --max-side {options.max_side}; --max-side 0 dreams at "
                f"full size), resized back to {w}x{h}")
        if note not in run.notes:
            run.notes.append(note)
    bounded = bounded_octaves(settings, wh, ww, field, explicit=options.octaves is not None)
    if bounded.octaves != settings.octaves:
        note = (f"{bounded.octaves} octave{'s' if bounded.octaves != 1 else ''} instead of the preset's "
                f"{settings.octaves}: smaller levels would be below the dream layer's receptive field")
        if note not in run.notes:
            run.notes.append(note)
    return image, bounded


def _dream_images(images: list[Path], files: OutputSet | None, model: LoadedModel, settings: DreamSettings,
                  options: DreamOptions, progress: bool, run: DreamRun, out: Path | None = None) -> None:
    """Dream each image into ``files`` as <name>-dream.png (or the one image to ``out``); unreadable
    images of a folder are skipped with a warning."""
    field = dream_field(model, settings)
    engines: dict[int, DreamEngine] = {}  # by octave count: images of other sizes may need fewer octaves
    with contextlib.ExitStack() as stack, tqdm(total=len(images) * settings.total_steps, unit="step", desc="dream",
                                               disable=not progress or None) as bar:
        for image_path in images:
            try:
                image = read_image(image_path)
            except DeepvisError as error:
                if files is None:
                    raise
                print(f"deepvis: warning: skipped {image_path}: {error}", file=sys.stderr)
                run.skipped.append({"file": str(image_path), "reason": str(error)})
                bar.update(settings.total_steps)
                continue
            work, bounded = _prepared(image, settings, field, options, run)
            if bounded.octaves not in engines:
                engines[bounded.octaves] = stack.enter_context(DreamEngine(model, bounded))
            result = dream(work, model, bounded, progress=lambda p: bar.update(1), engine=engines[bounded.octaves])
            dreamed = result.image
            if dreamed.shape != image.shape:
                dreamed = cv2.resize(dreamed, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
            if files is None:
                run.written.append(write_image(out, dreamed))
            else:
                run.written.append(files.write_image(f"{image_path.stem}-dream.png", dreamed))
    if files is not None and not run.written:
        raise DeepvisError(f"no readable image among the {len(images)} files: all are damaged or not images")


def _dream_video(spec: str, out: Path, model: LoadedModel, settings: DreamSettings, options: DreamOptions,
                 progress: bool, run: DreamRun) -> Path:
    target = out if out.suffix.lower() in VIDEO_SUFFIXES else out / f"{Path(spec).stem}-dream.mp4"

    def dreamer_for(first, stack: contextlib.ExitStack):  # the first frame gives the working size the octaves must fit
        _, bounded = _prepared(first, settings, dream_field(model, settings), options, run)
        dreamer = LiveDreamer(model, bounded, blend=options.blend, max_side=options.max_side or None)
        stack.callback(dreamer.close)
        return dreamer.step

    return map_video(spec, target, dreamer_for, options.max_frames, progress, "dream",
                     "deepvis dream takes a file, folder or video; for a camera use 'deepvis live' and its dream keys")


def map_video(spec: str, target: Path, step_for, max_frames: int | None, progress: bool, desc: str,
              live_refusal: str) -> Path:
    """Write ``step(frame)`` of every frame of the video ``spec`` to ``target`` (atomically), at the
    source's rate. step_for(first frame image, exit stack) -> step: called once, on the first frame."""
    source = open_source(spec)
    if source.live:
        source.close()
        raise DeepvisError(live_refusal)
    total = source.frame_count
    if max_frames is not None:
        total = max_frames if total is None else min(total, max_frames)
    with contextlib.ExitStack() as stack:
        stack.enter_context(source)
        stack.enter_context(user_write_errors(target))
        tmp = stack.enter_context(atomic_path(target))
        bar = stack.enter_context(tqdm(total=total, unit="frame", desc=desc, disable=not progress or None))
        video = step = None
        for frame in source:
            if step is None:
                step = step_for(frame.image, stack)
            image = step(frame.image)
            if video is None:
                h, w = image.shape[:2]
                video = VideoOutput(tmp, source.fps or 30.0, (w, h), name=target)
                stack.callback(video.close)
            video.write(image)
            bar.update(1)
            if max_frames is not None and video.frames >= max_frames:
                break
        if video is None:
            raise DeepvisError(f"video {spec} delivered no frames")
        video.finish()
    return target
