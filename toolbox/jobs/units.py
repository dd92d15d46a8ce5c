"""deepvis units: precompute the synthetic images of a layer's channels into the unit cache."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from toolbox.analysis.top_patches import TopPatches
from toolbox.analysis.unit_cache import DEFAULT_BATCH, UnitCache, compute_unit_images
from toolbox.analysis.unitvis import DEFAULT_PRESET, preset
from toolbox.atomic import check_writable_folder, write_image
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import chosen_layer, model_from_config
from toolbox.output_set import OutputSet
from toolbox.render.text import titled_image
from toolbox.render.unit_column import patch_montage


@dataclass(frozen=True)
class UnitsResult:
    folder: Path  # where this layer's images are (cache layout)
    sheet: Path  # all requested channels in one grid, channel order
    channels: list[int]


def parse_channels(spec: str | None, available: int) -> list[int]:
    """'0:64' (slice, end exclusive), '3,5,9', '7' or None (all) -> channel list, checked against the
    layer's ``available`` channels (an end past the last channel is an error naming the count)."""
    if spec is None or spec.strip() in ("", ":", "all"):
        return list(range(available))
    try:
        if ":" in spec:
            start, _, stop = spec.partition(":")
            first, end = int(start or 0), int(stop) if stop.strip() else available
            if end > available:
                raise DeepvisError(f"--channels '{spec}' reaches channel {end - 1}, but the layer has {available} "
                                   f"channels (0..{available - 1}): use e.g. 0:{available}")
            chosen = list(range(first, end))
        else:
            chosen = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise DeepvisError(f"--channels '{spec}' is not a slice like 0:64 or a list like 3,5,9") from None
    bad = [c for c in chosen if not 0 <= c < available]
    if bad or not chosen:
        raise DeepvisError(f"--channels '{spec}' selects no channels in 0..{available - 1} (the layer has {available} "
                           "channels): pick channels in that range")
    return chosen


def units(config: Config, channels: str | None = None, out: str | Path | None = None, preset_name: str = DEFAULT_PRESET,
          steps: int | None = None, size: int | None = None, batch: int = DEFAULT_BATCH,
          progress: bool = True) -> UnitsResult:
    """Compute (or read from the cache) one image per channel of the configured layer."""
    if batch < 1:
        raise DeepvisError(f"--batch must be 1 or more channels, not {batch}")
    settings = preset(preset_name, steps=steps, size=size)
    cache = UnitCache(out)
    check_writable_folder(cache.root)  # before any work; creates nothing
    model = model_from_config(config)
    if model.module is None:
        raise DeepvisError("unit images need gradients, which an ONNX graph does not give: use a PyTorch model")
    layer = chosen_layer(model, config.model.layer)
    (info,) = model.layer_infos([layer])
    if len(info.shape) != 3:
        raise DeepvisError(f"layer '{layer}' outputs shape {info.shape}, not a feature map: "
                           "pick a conv layer (deepvis layers)")
    chosen = parse_channels(channels, info.channels)
    with tqdm(total=len(chosen), unit="ch", desc=f"units {layer}", disable=not progress or None) as bar:
        def on_progress(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

        def on_step(step: int, total: int) -> None:
            bar.set_postfix_str(f"step {step}/{total}", refresh=step == total or step % 8 == 0)

        images = compute_unit_images(model, layer, chosen, settings, progress=on_progress, cache=cache, batch=batch,
                                     on_step=on_step)
    cols = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / cols)
    folder = cache.folder(model, layer, settings)
    sheet = folder / f"sheet-{chosen[0]:04d}-{chosen[-1]:04d}.png"
    write_image(sheet, patch_montage([images[c] for c in chosen], settings.size, rows=rows, cols=cols))
    return UnitsResult(folder, sheet, chosen)


def write_top_patches(tracker: TopPatches, outputs: OutputSet, layer: str, tile: int = 64) -> Path:
    """Into ``outputs``: top_patches/<layer>_<channel:04d>.png (3x3 montage, best first, row by row,
    under a title naming layer and channel) and top_patches.json (layer, receptive field, per
    channel: value, frame, y, x, box); -> the JSON's final path."""
    stem = layer.replace("/", "_")
    for channel in range(tracker.channels):
        crops = [p.image for p in tracker.patches(channel)]
        montage = titled_image(patch_montage(crops, tile), f"{layer} ch {channel}: top {len(crops)}", scale=0.4)
        outputs.write_image(f"top_patches/{stem}_{channel:04d}.png", montage)
    return outputs.write_json("top_patches.json", {"layer": layer, **tracker.summary()})
