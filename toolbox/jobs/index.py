"""deepvis index: embed the frames of videos, images, folders or streams into a feature index."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from toolbox.analysis.latent.embed import FrameEmbedder
from toolbox.analysis.latent.features import POOLS
from toolbox.analysis.latent.search import search_kind
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import check_max_frames, default_layer, model_from_config
from toolbox.jobs.index_store import IndexRecipe, IndexStore, SourceProgress
from toolbox.models.receptive_field import receptive_field
from toolbox.models.registry import LoadedModel
from toolbox.sources import open_source
from toolbox.sources.images import ImageListSource

THUMBNAIL = 64  # side of the stored thumbnails in pixels
BATCH = 16  # frames per forward
CHECKPOINT = 512  # frames per shard: an interrupted build loses at most this many


@dataclass(frozen=True)
class IndexResult:
    folder: Path
    added: int  # vectors (frames, or patches for a patch index)
    total: int
    skipped_sources: list[str]  # already complete in the index
    search: str  # exact | approximate (HNSW)


def index_layer(model: LoadedModel, requested: str | None) -> str:
    """The requested layer, else the last visualisable one (the features the classifier reads)."""
    if requested is None:
        return model.layers[-1]
    if requested.isdigit() and int(requested) < len(model.layers):
        return model.layers[int(requested)]
    return model.check_layer(requested)


def recipe_for(model: LoadedModel, layer: str, pool: str) -> IndexRecipe:
    p = model.preprocess
    return IndexRecipe(model.name, model.weights_id, layer, pool,
                       {"size": p.size, "mean": list(p.mean), "std": list(p.std), "scale": p.scale}, model.weights)


def thumbnail(view: np.ndarray, side: int = THUMBNAIL) -> np.ndarray:
    """(S, S, 3) uint8 model view -> (side, side, 3) uint8."""
    return cv2.resize(view, (side, side), interpolation=cv2.INTER_AREA)


def build_index(sources: list[str], out: str | Path, config: Config, every: int = 1, pool: str = "mean",
                max_frames: int | None = None, progress: bool = True, checkpoint: int = CHECKPOINT,
                batch: int = BATCH, patches: bool = False) -> IndexResult:
    """Add every ``every``-th frame of each source to the index at ``out`` (created, or appended to).

    ``patches``: one vector per spatial position of the layer (default: the middle visualisable one)
    instead of one per frame, each with its receptive-field crop as thumbnail and its position.

    A source the index already holds completely is skipped; one it holds partly resumes where the
    last checkpoint left it. ``max_frames`` bounds the frames taken per source (needed for cameras
    and streams, which never end).
    """
    if every < 1:
        raise DeepvisError(f"--every must be 1 or more, not {every}")
    if max_frames is not None:
        check_max_frames(max_frames)
    if pool not in POOLS:
        raise DeepvisError(f"--pool {pool}: choose one of {', '.join(POOLS)}")
    store = IndexStore(out)
    model = model_from_config(config)
    if patches:
        pool = "patch"
        layer = index_layer(model, config.model.layer or default_layer(model))
    else:
        layer = index_layer(model, config.model.layer)
    recipe = recipe_for(model, layer, pool)
    store.start(recipe)
    before = store.count
    skipped = []
    with FrameEmbedder(model, layer, pool) as embedder:
        for spec in sources:
            state = store.progress(spec)
            if state.done and state.every == every:
                skipped.append(spec)
                continue
            if state.every != every and state.next_frame:
                state = SourceProgress()  # another sampling: start the source again
            _index_source(store, embedder, spec, SourceProgress(state.next_frame, every), max_frames, progress,
                          checkpoint, batch)
    return IndexResult(store.folder, store.count - before, store.count, skipped, search_kind(store.count))


def _index_source(store: IndexStore, embedder: FrameEmbedder, spec: str, state: SourceProgress,
                  max_frames: int | None, progress: bool, checkpoint: int, batch: int) -> None:
    source = open_source(spec)
    if source.live and max_frames is None:
        source.close()
        raise DeepvisError(f"{spec} is a camera or stream and never ends: give --max-frames N")
    preprocess = embedder.model.preprocess
    files = source.paths if isinstance(source, ImageListSource) else None
    field = receptive_field(embedder.model, embedder.layer) if embedder.pool == "patch" else None
    try:
        if state.next_frame and source.seekable:
            source.seek(state.next_frame)
        total = source.frame_count
        first = -(-state.next_frame // state.every) * state.every
        wanted = None if total is None else len(range(first, total, state.every))
        if max_frames is not None:
            wanted = max_frames if wanted is None else min(wanted, max_frames)
        views, meta, pending_vec, pending_thumb, pending_items = [], [], [], [], []
        taken = 0
        bar = tqdm(total=wanted, unit="frame", desc=f"index {Path(spec).name}", disable=not progress or None)

        def flush_batch() -> None:
            if not views:
                return
            out = embedder.embed(views)
            categories = embedder.model.categories
            positions = [(None, None)] if out.grid is None else [(y, x) for y in range(out.grid[0])
                                                                   for x in range(out.grid[1])]
            for k, (frame_index, time) in enumerate(meta):
                c = int(out.top1[k * len(positions)])
                for y, x in positions:
                    item = {"source": spec, "frame": frame_index, "time": round(float(time), 4),
                            "class": categories[c] if c < len(categories) else str(c), "class_index": c,
                            "probability": round(float(out.probability[k * len(positions)]), 5)}
                    if files is not None:
                        item["file"] = str(files[frame_index])
                    picture = views[k]
                    if field is not None:
                        y0, x0, y1, x1 = field.clipped_box(y, x, *picture.shape[:2])
                        item.update(y=y, x=x, box=[y0, x0, y1, x1])  # in model-view pixels
                        picture = picture[y0:y1, x0:x1]
                    pending_items.append(item)
                    pending_thumb.append(thumbnail(picture))
            pending_vec.append(out.vectors)
            bar.update(len(views))
            views.clear()
            meta.clear()

        def commit(next_frame: int, done: bool) -> None:
            flush_batch()
            vectors = np.concatenate(pending_vec) if pending_vec else np.zeros((0, 0), np.float32)
            thumbs = np.stack(pending_thumb) if pending_thumb else np.zeros((0, THUMBNAIL, THUMBNAIL, 3), np.uint8)
            store.append(vectors, thumbs, list(pending_items),
                         {spec: SourceProgress(next_frame, state.every, done)})
            pending_vec.clear()
            pending_thumb.clear()
            pending_items.clear()

        next_frame = state.next_frame
        while max_frames is None or taken < max_frames:
            frame = source.read()
            if frame is None:
                break
            next_frame = frame.index + 1
            if frame.index < state.next_frame or frame.index % state.every:  # every N-th from frame 0
                continue
            views.append(preprocess.model_view(frame.image))
            meta.append((frame.index, frame.timestamp))
            taken += 1
            if len(views) >= batch:
                flush_batch()
            if len(pending_items) + len(views) >= checkpoint:
                commit(next_frame, False)
        # A bounded run of a finite source is not complete: a later run without the bound resumes it.
        commit(next_frame, done=source.frame_count is not None and (max_frames is None or taken < max_frames))
        bar.close()
    finally:
        source.close()
