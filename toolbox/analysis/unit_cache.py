"""Unit images on disk: computed once per (model weights, layer, channel, settings), then read back.

Layout (documented so other tools can read it):
    <root>/<model>-<weights_id>/<layer>/<settings key>/<channel:04d>.png   (S x S, BGR uint8)
    <root>/<model>-<weights_id>/<layer>/<settings key>/settings.json       (the settings, readable)
Root: ``DEEPVIS_CACHE`` if set, else ``~/.cache/deepvis/units``. Files are written atomically,
so a reader never sees half an image, and several processes may share the cache.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from toolbox.analysis.unitvis import (DEFAULT_PRESET, PRESETS, Cancelled, UnitVisSettings, to_bgr_uint8,
                                      unit_images)
from toolbox.analysis.optimise.progress import CancelSignal, cancel_check
from toolbox.atomic import write_image, write_json
from toolbox.cache import cache_root
from toolbox.models.registry import LoadedModel

DEFAULT_BATCH = 32  # channels optimised together; bounds memory (lite0 at 128 px: a few hundred MB)


def default_cache_root() -> Path:
    """<deepvis cache>/units ($DEEPVIS_CACHE/units, else ~/.cache/deepvis/units)."""
    return cache_root() / "units"


class UnitCache:
    """Read and write unit images under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()

    def folder(self, model: LoadedModel, layer: str, settings: UnitVisSettings) -> Path:
        return self.root / f"{model.name}-{model.weights_id}" / layer.replace("/", "_") / settings.key()

    def path(self, model: LoadedModel, layer: str, channel: int, settings: UnitVisSettings) -> Path:
        return self.folder(model, layer, settings) / f"{channel:04d}.png"

    def get(self, model: LoadedModel, layer: str, channel: int, settings: UnitVisSettings) -> Optional[np.ndarray]:
        """(S, S, 3) uint8 BGR, or None if not cached (or unreadable)."""
        path = self.path(model, layer, channel, settings)
        if not path.is_file():
            return None
        return cv2.imread(str(path), cv2.IMREAD_COLOR)

    def put(self, model: LoadedModel, layer: str, channel: int, settings: UnitVisSettings, image: np.ndarray) -> Path:
        folder = self.folder(model, layer, settings)
        if not (folder / "settings.json").is_file():
            write_json(folder / "settings.json", {"model": model.name, "weights_id": model.weights_id, "layer": layer,
                                                  "settings": dataclasses.asdict(settings)})
        return write_image(self.path(model, layer, channel, settings), image)


def cached_unit_image(model: LoadedModel, layer: str, channel: int,
                      settings: UnitVisSettings = PRESETS[DEFAULT_PRESET],
                      cache: UnitCache | None = None) -> Optional[np.ndarray]:
    """The unit's synthetic image from the cache, (S, S, 3) uint8 BGR, or None. Never computes:
    safe to call from a drawing thread."""
    return (cache or UnitCache()).get(model, layer, channel, settings)


def compute_unit_images(model: LoadedModel, layer: str, channels: Sequence[int],
                        settings: UnitVisSettings = PRESETS[DEFAULT_PRESET],
                        progress: Optional[Callable[[int, int], None]] = None, cancel: CancelSignal = None,
                        cache: UnitCache | None = None, batch: int = DEFAULT_BATCH,
                        on_step: Optional[Callable[[int, int], None]] = None) -> dict[int, np.ndarray]:
    """{channel: (S, S, 3) uint8 BGR} for ``channels``: cached ones are read, missing ones optimised
    ``batch`` at a time and stored as soon as each batch is done.

    Meant for a background thread: ``progress(done, total)`` counts channels (cached ones at once);
    ``cancel`` (a threading.Event or a callable) stops between optimisation steps, returning the
    images finished so far. ``cache=None`` uses the default cache root. ``on_step(step, steps)``
    reports the optimisation steps of the batch in progress.
    """
    cache = cache or UnitCache()
    channels = list(dict.fromkeys(int(c) for c in channels))
    images: dict[int, np.ndarray] = {}
    missing = []
    for c in channels:
        image = cache.get(model, layer, c, settings)
        if image is None:
            missing.append(c)
        else:
            images[c] = image
    total = len(channels)
    if progress is not None:
        progress(len(images), total)
    for start in range(0, len(missing), max(1, batch)):
        if cancel_check(cancel)():
            break
        chunk = missing[start : start + batch]
        try:
            rgb = unit_images(model, layer, chunk, settings, on_step=on_step, cancel=cancel)
        except Cancelled:
            break
        for c, image in zip(chunk, to_bgr_uint8(rgb)):
            cache.put(model, layer, c, settings, image)
            images[c] = image
        if progress is not None:
            progress(len(images), total)
    return images
