"""deepvis invert: reconstruct an image (or a video's first frame) from one layer's activation, or from
every visualisable layer as one labelled strip (input, then layer by layer: the information lost with depth).

Images are reconstructed at ``--size`` on the long side (inversion from noise is slow on a CPU);
the strip's captions give the layer and the PSNR of the reconstruction against the input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from toolbox.analysis.dream.core import bgr_to_rgb01, rgb01_to_bgr
from toolbox.analysis.inversion import InversionSettings, invert
from toolbox.analysis.optimise.features import FeatureGradient
from toolbox.analysis.optimise.network import LOGITS
from toolbox.atomic import user_write_errors, write_image
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import VIDEO_SUFFIXES, model_from_config
from toolbox.jobs.dream import working_size
from toolbox.models.registry import LoadedModel
from toolbox.render.montage import neighbour_montage
from toolbox.sources import open_source, read_image
from toolbox.sources.images import IMAGE_SUFFIXES

DEFAULT_SIZE = 160  # long side, pixels


@dataclass
class InvertRun:
    written: Path
    psnr: dict[str, float] = field(default_factory=dict)  # layer -> dB against the input
    notes: list[str] = field(default_factory=list)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two RGB [0, 1] images (inf when equal)."""
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def torch_model(config: Config, job: str) -> LoadedModel:
    model = model_from_config(config)
    if getattr(model, "module", None) is None:
        raise DeepvisError(f"{job} needs gradients: use a PyTorch model (--backend torch), not an ONNX graph")
    return model


def first_image(spec: str) -> np.ndarray:
    """(H, W, 3) uint8 BGR: the image file, or the first frame of a video."""
    path = Path(spec)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path)
    with open_source(spec) as source:
        for frame in source:
            return frame.image
    raise DeepvisError(f"video {spec} delivered no frames")


def inversion_layers(model: LoadedModel, spec: str | None, config_layer: str | None) -> list[str]:
    """'all' -> every visualisable layer then logits; 'a,b' or one name/index -> those."""
    if spec == "all":
        return [*model.layers, LOGITS]
    names = []
    for item in filter(None, (s.strip() for s in (spec or config_layer or model.layers[len(model.layers) // 2]).split(","))):
        if item.isdigit():
            if int(item) >= len(model.layers):
                raise DeepvisError(f"layer index {item} out of range: 0..{len(model.layers) - 1} (deepvis layers)")
            item = model.layers[int(item)]
        elif item != LOGITS:
            model.check_layer(item)
        names.append(item)
    return names


def run_invert(input_spec: str, out: str | Path, config: Config, layers: str | None = None, size: int = DEFAULT_SIZE,
               settings: InversionSettings = InversionSettings(), progress: bool = True) -> InvertRun:
    """Invert INPUT at the layers into OUT (an image path; a folder gets <name>-invert.png)."""
    out = Path(out)
    if out.suffix.lower() in VIDEO_SUFFIXES:
        raise DeepvisError(f"--out {out} is a video name, but deepvis invert writes one picture: give a .png name or a folder")
    target = out if out.suffix.lower() in IMAGE_SUFFIXES else out / f"{Path(input_spec).stem}-invert.png"
    if size < 16:
        raise DeepvisError(f"--size must be at least 16 pixels, not {size}")
    image = first_image(input_spec)
    model = torch_model(config, "inversion")
    names = inversion_layers(model, layers, config.model.layer)
    h, w = working_size(*image.shape[:2], size)
    work = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != image.shape[:2] else image
    rgb = bgr_to_rgb01(work, model.device)
    run = InvertRun(target)
    if (h, w) != image.shape[:2]:
        run.notes.append(f"inverted at {w}x{h} (--size {size} on the long side)")
    pictures = []
    with tqdm(total=len(names) * settings.steps, unit="step", desc="invert", disable=not progress or None) as bar:
        for layer in names:
            with FeatureGradient(model, [layer]) as oracle:
                if len(names) > 1 and not oracle.features(rgb)[layer].any():  # nothing to invert: say so in the strip
                    run.notes.append(f"{layer} is all zero for this image: its tile is left blank")
                    run.psnr[layer] = math.nan
                    pictures.append(np.full_like(work, 40))
                    bar.update(settings.steps)
                    continue
                result = invert(rgb, model, layer, settings, progress=lambda p: bar.update(1), oracle=oracle)
            run.notes += [f"{layer}: {note}, resized back to {w}x{h}" for note in result.fallbacks]
            run.psnr[layer] = psnr(result.rgb, rgb.cpu())
            pictures.append(rgb01_to_bgr(result.rgb))
    if len(names) == 1:
        picture = pictures[0]
    else:
        captions = [[layer, "all zero" if math.isnan(run.psnr[layer]) else f"PSNR {run.psnr[layer]:.1f} dB"]
                    for layer in names]
        picture = neighbour_montage(work, ["input", f"{w}x{h}"], pictures, captions, tile=max(h, w) if max(h, w) <= 192 else 192,
                                    cols=len(names) + 1,
                                    title=f"{model.name}: inversion from each layer (Mahendran & Vedaldi, {settings.steps} steps)")
    with user_write_errors(target):
        write_image(target, picture)
    return run
