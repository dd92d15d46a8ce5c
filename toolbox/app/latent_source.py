"""The feature vectors the live latent views share: the current frame's pooled vector at the index's
layer, and what it is compared with: a feature index (``live --index DIR``) or, without one, a rolling
memory of the frames this session has seen (the last few thousand, near-duplicates skipped).

``latent_source(app)`` makes it once per app and adds the compute stage "latent", which puts the
frame's vector (D,) float32 in ``result.extras["latent"]`` (and offers it to the memory) for the
neighbours and map stages that run after it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolbox.analysis.latent.features import pooled_features
from toolbox.analysis.latent.memory import Remembered, RollingMemory
from toolbox.analysis.latent.search import VectorSearch
from toolbox.errors import DeepvisError
from toolbox.jobs.index import recipe_for, thumbnail
from toolbox.jobs.index_store import LoadedIndex, load_index

MEMORY_FRAMES = 4096
DUPLICATE_RATIO = 0.05  # a frame within 5 % (relative L2) of the last kept one is not kept


@dataclass(frozen=True)
class Match:
    """One neighbour: L2 distance, thumbnail (t, t, 3) uint8 BGR, caption, top-1 class."""

    distance: float
    thumbnail: np.ndarray
    label: str
    cls: str


class LiveLatent:
    def __init__(self, model, live_layers: list[str], index: LoadedIndex | None = None):
        self.index = index
        if index is not None:
            layer, pool = index.recipe.layer, index.recipe.pool
            mine = recipe_for(model, layer, pool)
            if mine.differences(index.recipe):
                raise DeepvisError(f"--index {index.folder} was built with {index.recipe.describe()}; the live "
                                   f"window runs {mine.describe()}: start it with the index's --model and --weights")
            if layer not in live_layers:
                raise DeepvisError(f"--index {index.folder} is at layer {layer}, which the live window does not "
                                   "capture: build the index at one of the layers 'deepvis layers' lists")
            self.search = VectorSearch(index.vectors, threads=1)  # one query per frame: threads only wait
        else:
            layer, pool = model.layers[-1], "mean"
            self.search = None
        self.layer, self.pool = layer, pool
        self.memory = RollingMemory(MEMORY_FRAMES, DUPLICATE_RATIO)
        self.categories = model.categories

    @property
    def description(self) -> str:
        if self.index is not None:
            return f"index {self.index.folder.name}: {len(self.index)} frames"
        return f"this session: {len(self.memory)} frames"

    def stage(self, result, state) -> np.ndarray:
        """Compute thread, after each forward: the frame's vector; remembered when there is no index."""
        vector = pooled_features(result.activations[self.layer][None], self.pool)[0].numpy()
        if self.index is None:
            top = result.predictions[0].label if result.predictions else ""
            self.memory.offer(vector, Remembered(result.frame_index, result.captured.frame.timestamp,
                                                 thumbnail(result.view), top))
        return vector

    def nearest(self, vector: np.ndarray, k: int, frame_index: int | None = None) -> list[Match]:
        """The k nearest indexed (or remembered) frames, nearest first; the current frame itself is
        left out of the memory's answer."""
        if self.index is not None:
            distances, ids = self.search.search(vector[None], k)
            return [Match(float(d), self.index.thumbnails[i], self.index.label(int(i)),
                          str(self.index.items[i]["class"])) for d, i in zip(distances[0], ids[0]) if i >= 0]
        found = [(d, item) for d, item in self.memory.search(vector, k + 1) if item.frame != frame_index]
        return [Match(d, item.thumbnail, f"frame {item.frame} @ {item.time:.1f} s", item.label)
                for d, item in found[:k]]

    def map_data(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """What a map is fitted on: vectors (N, D), thumbnails (N, t, t, 3), top-1 classes (N)."""
        if self.index is not None:
            return self.index.vectors, self.index.thumbnails, [str(i["class"]) for i in self.index.items]
        vectors, items = self.memory.snapshot()
        thumbs = np.stack([i.thumbnail for i in items]) if items else np.zeros((0, 64, 64, 3), np.uint8)
        return vectors, thumbs, [i.label for i in items]


def latent_source(app) -> LiveLatent:
    """The app's LiveLatent, made (with its compute stage) on first use."""
    source = getattr(app, "latent", None)
    if source is None:
        index_dir = getattr(app.options, "index", None)
        index = load_index(index_dir) if index_dir else None
        source = LiveLatent(app.model, [s.name for s in app.layers], index)
        app.latent = source
        app.compute.add_stage("latent", source.stage)
    return source
