"""deepvis neighbours: the indexed frames nearest to a query picture in the index's feature space."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolbox.analysis.latent.embed import FrameEmbedder
from toolbox.analysis.latent.search import VectorSearch
from toolbox.config import Config
from toolbox.errors import DeepvisError
from toolbox.jobs.common import model_from_config
from toolbox.jobs.index import recipe_for
from toolbox.jobs.index_store import IndexRecipe, LoadedIndex, load_index
from toolbox.models.registry import LoadedModel
from toolbox.output_set import OutputSet, check_output_folder
from toolbox.render.montage import neighbour_montage
from toolbox.sources import open_source, read_image
from toolbox.sources.images import IMAGE_SUFFIXES

ITEM_QUERY = re.compile(r"#(\d+)")  # '#12': item 12 of the index
FRAME_QUERY = re.compile(r"(.+)@(\d+(?:\.\d*)?)(s?)")  # 'video.mp4@12.5s' (seconds) or 'video.mp4@300' (frame)


@dataclass(frozen=True)
class Neighbour:
    id: int  # position in the index
    distance: float  # L2 in the index's feature space
    item: dict  # provenance: source, frame, time, class, ...


@dataclass(frozen=True)
class NeighboursResult:
    montage: Path
    json: Path
    neighbours: list[Neighbour]


def index_model(recipe: IndexRecipe, config: Config, folder: Path | str = "") -> LoadedModel:
    """The model that made an index's vectors. The config's model and weights apply when the user set
    them (``config.model.name`` / ``weights`` not None), else the index's own; a model whose recipe
    differs from the index's is refused, naming both."""
    m = config.model
    name = m.name or recipe.model
    weights = m.weights if m.weights is not None else ("none" if recipe.weights == "random" else recipe.weights or None)
    model = model_from_config(dataclasses.replace(config, model=dataclasses.replace(m, name=name, weights=weights)))
    mine = recipe_for(model, recipe.layer, recipe.pool)
    if mine.differences(recipe):
        raise DeepvisError(f"index {folder} was built with {recipe.describe()}; this run uses "
                           f"{mine.describe()}: use the index's --model and --weights")
    return model


def query_picture(query: str, index: LoadedIndex) -> tuple[np.ndarray | None, int | None, str]:
    """(BGR picture or None, index item or None, caption) of what the user named."""
    match = ITEM_QUERY.fullmatch(query.strip())
    if match:
        i = int(match.group(1))
        if i >= len(index):
            raise DeepvisError(f"query #{i}: the index has items #0..#{len(index) - 1}")
        return None, i, f"item #{i}: {index.label(i)}"
    match = FRAME_QUERY.fullmatch(query)
    spec, at = (match.group(1), match.group(2) + match.group(3)) if match and not Path(query).exists() else (query, "")
    path = Path(spec)
    if not at and path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path), None, path.name
    source = open_source(spec)
    try:
        if at:
            fps = source.fps or 30.0
            frame_index = round(float(at[:-1]) * fps) if at.endswith("s") else int(float(at))
            count = source.frame_count
            if count is not None and frame_index >= count:
                raise DeepvisError(f"{query}: {spec} has {count} frames ({count / fps:.1f} s); pick an earlier time")
            if frame_index:
                source.seek(frame_index)
        frame = source.read()
    finally:
        source.close()
    if frame is None:
        raise DeepvisError(f"{query}: no frame could be read; check the file")
    return frame.image, None, f"{Path(spec).name} @ {frame.timestamp:.2f} s"


def item_picture(index: LoadedIndex, i: int) -> np.ndarray:
    """Item ``i`` at full resolution when its source can still be read, else its thumbnail."""
    item = index.items[i]
    if "box" in item:
        return index.thumbnails[i]  # a patch: its receptive-field crop
    try:
        if item.get("file"):
            return read_image(item["file"])
        source = open_source(str(item["source"]))
        try:
            if source.seekable:
                source.seek(int(item["frame"]))
                frame = source.read()
                if frame is not None and frame.index == int(item["frame"]):
                    return frame.image
        finally:
            source.close()
    except DeepvisError:
        pass
    return index.thumbnails[i]


def nearest(index: LoadedIndex, vector: np.ndarray, k: int, exclude: int | None = None) -> list[Neighbour]:
    """The k items nearest to ``vector`` (D,), nearest first (``exclude``: an item left out)."""
    search = VectorSearch(index.vectors)
    distances, ids = search.search(vector[None], k + (exclude is not None))
    found = [Neighbour(int(i), float(d), index.items[int(i)]) for d, i in zip(distances[0], ids[0])
             if i >= 0 and int(i) != exclude]
    return found[:k]


def neighbours(query: str, index_dir: str | Path, out: str | Path, config: Config, k: int = 8,
               tile: int = 160) -> NeighboursResult:
    """Write ``out``/neighbours.png (query + k neighbours, captioned) and ``out``/neighbours.json
    ([{source, frame, time, distance, ...}], nearest first)."""
    if k < 1:
        raise DeepvisError(f"-k must be 1 or more, not {k}")
    check_output_folder(out)
    index = load_index(index_dir)
    picture, item, caption = query_picture(query, index)
    if item is not None:
        vector = index.vectors[item]
        picture = item_picture(index, item)
    else:
        model = index_model(index.recipe, config, index.folder)
        if index.recipe.pool == "patch":
            raise DeepvisError("a patch index answers queries by item (#N): give one of its patches, e.g. #0")
        with FrameEmbedder(model, index.recipe.layer, index.recipe.pool) as embedder:
            vector = embedder.embed([model.preprocess.model_view(picture)]).vectors[0]
    found = nearest(index, vector, k, exclude=item)
    records = [{"source": n.item["source"], "frame": n.item["frame"], "time": n.item["time"],
                "distance": round(n.distance, 6), "index": n.id,
                **{key: n.item[key] for key in ("class", "file") if key in n.item}} for n in found]
    montage = neighbour_montage(
        picture, ["query", caption],
        [item_picture(index, n.id) for n in found],
        [[f"#{r + 1}  d = {n.distance:.2f}", index.label(n.id)] for r, n in enumerate(found)],
        tile=tile, title=f"{len(found)} nearest of {len(index)} {'patches' if index.recipe.pool == 'patch' else 'frames'}"
                         f" at {index.recipe.layer} "
                         f"({index.recipe.model}, {index.recipe.pool} pooling, L2)")
    with OutputSet(out, job="neighbours") as outputs:
        json_path = outputs.write_json("neighbours.json", records)
        montage_path = outputs.write_image("neighbours.png", montage)
    return NeighboursResult(montage_path, json_path, found)
