"""A feature index on disk: pooled layer vectors of frames, with their provenance and thumbnails.

    INDEX_DIR/index.json         what built it (model, weights hash, layer, pool, preprocessing),
                                 its shards and how far each source got (the commit record)
    INDEX_DIR/shard-NNNN.npz     vectors (n, D) float32, thumbnails (n, t, t, 3) uint8 BGR
    INDEX_DIR/shard-NNNN.json    items: [{source, frame, time, class, class_index, probability, file?}]

Every file is written atomically and index.json last, so an interrupted build leaves the index as it
was at its last checkpoint (a half-made shard is never listed, and the next run overwrites it).
Appending adds shards; an index built with another model, weights, layer, pooling or preprocessing
is refused, naming both.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from toolbox.atomic import atomic_path, user_write_errors, write_json
from toolbox.errors import DeepvisError

FORMAT = 1
META_FILE = "index.json"


@dataclass(frozen=True)
class IndexRecipe:
    """How the vectors were made; two indexes can share vectors only if their recipes are equal."""

    model: str
    weights_id: str  # content hash of the weights
    layer: str
    pool: str  # mean | max | patch (one vector per position)
    preprocess: dict  # size, mean, std, scale
    weights: str = ""  # where the weights came from (informative; not compared)

    def describe(self) -> str:
        return f"model {self.model} (weights {self.weights_id}), layer {self.layer}, {self.pool} pooling"

    def differences(self, other: "IndexRecipe") -> list[str]:
        names = ("model", "weights_id", "layer", "pool", "preprocess")
        return [n for n in names if getattr(self, n) != getattr(other, n)]


@dataclass
class SourceProgress:
    next_frame: int = 0  # the first frame index not yet looked at
    every: int = 1
    done: bool = False


@dataclass
class LoadedIndex:
    """An index in memory. vectors (N, D) float32; thumbnails (N, t, t, 3) uint8 BGR; items: N dicts."""

    folder: Path
    recipe: IndexRecipe
    vectors: np.ndarray
    thumbnails: np.ndarray
    items: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def label(self, i: int) -> str:
        """'bikes @ 3.20 s' or the image file name: where item ``i`` came from."""
        item = self.items[i]
        where = f" ({item['y']}, {item['x']})" if "y" in item else ""
        if item.get("file"):
            return Path(item["file"]).name + where
        return f"{Path(str(item['source'])).name} @ {item['time']:.2f} s{where}"


class IndexStore:
    """The folder of one index: read its record, check a recipe against it, append shards."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.meta: dict | None = None
        path = self.folder / META_FILE
        if path.is_file():
            try:
                self.meta = json.loads(path.read_text())
                self.meta["recipe"], self.meta["shards"]  # noqa: B018 - both must be there
            except (ValueError, KeyError, TypeError):
                raise DeepvisError(f"{path} is not a deepvis index record: pick another folder, or delete it") from None
        elif self.folder.exists() and not self.folder.is_dir():
            raise DeepvisError(f"{self.folder} is a file, not an index folder: give a folder path")
        elif self.folder.is_dir() and any(self.folder.iterdir()):
            raise DeepvisError(f"{self.folder} already holds files that are not a deepvis index: give a new or "
                               "empty folder")

    @property
    def exists(self) -> bool:
        return self.meta is not None

    @property
    def recipe(self) -> IndexRecipe | None:
        return None if self.meta is None else IndexRecipe(**self.meta["recipe"])

    @property
    def count(self) -> int:
        return 0 if self.meta is None else sum(s["count"] for s in self.meta["shards"])

    def check_recipe(self, recipe: IndexRecipe) -> None:
        """Refuse to mix vectors made another way, naming both recipes."""
        mine = self.recipe
        if mine is None:
            return
        if mine.differences(recipe):
            raise DeepvisError(f"index {self.folder} was built with {mine.describe()}; this run uses "
                               f"{recipe.describe()}: use the same --model/--weights/--layer/--pool, or another --out")

    def start(self, recipe: IndexRecipe) -> None:
        """Begin a new index, or continue this one after ``check_recipe``."""
        self.check_recipe(recipe)
        if self.meta is None:
            self.meta = {"format": FORMAT, "recipe": asdict(recipe), "dim": None, "shards": [], "sources": {}}

    def progress(self, source: str) -> SourceProgress:
        entry = (self.meta or {}).get("sources", {}).get(source)
        return SourceProgress(**entry) if entry else SourceProgress()

    def append(self, vectors: np.ndarray, thumbnails: np.ndarray, items: list[dict],
               progress: dict[str, SourceProgress]) -> None:
        """Write one shard, then the record that lists it with the sources' new progress."""
        assert self.meta is not None, "start() first"
        with user_write_errors(self.folder):
            self._append(vectors, thumbnails, items, progress)

    def _append(self, vectors, thumbnails, items, progress) -> None:
        if len(items):
            if self.meta["dim"] not in (None, vectors.shape[1]):
                raise DeepvisError(f"index {self.folder} holds {self.meta['dim']}-d vectors, these are "
                                   f"{vectors.shape[1]}-d: use another --out")
            name = f"shard-{len(self.meta['shards']):04d}"
            with atomic_path(self.folder / f"{name}.npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, vectors=vectors.astype(np.float32), thumbnails=thumbnails)
            write_json(self.folder / f"{name}.json", items)
            self.meta["dim"] = int(vectors.shape[1])
            self.meta["shards"].append({"name": name, "count": len(items)})
        for source, state in progress.items():
            self.meta["sources"][source] = asdict(state)
        write_json(self.folder / META_FILE, self.meta)

    def load(self) -> LoadedIndex:
        """Every shard in memory. Raises for a missing or empty index."""
        if self.meta is None:
            raise DeepvisError(f"no index at {self.folder}: build one with 'deepvis index SOURCE --out {self.folder}'")
        if self.count == 0:
            raise DeepvisError(f"index {self.folder} is empty: add frames with 'deepvis index SOURCE --out {self.folder}'")
        vectors, thumbs, items = [], [], []
        for shard in self.meta["shards"]:
            try:
                with np.load(self.folder / f"{shard['name']}.npz") as data:
                    vectors.append(data["vectors"])
                    thumbs.append(data["thumbnails"])
                items.extend(json.loads((self.folder / f"{shard['name']}.json").read_text()))
            except (OSError, ValueError, KeyError) as exc:
                raise DeepvisError(f"index {self.folder}: shard {shard['name']} is unreadable "
                                   f"({type(exc).__name__}): rebuild the index") from None
        return LoadedIndex(self.folder, self.recipe, np.concatenate(vectors), np.concatenate(thumbs), items)


def load_index(folder: str | Path) -> LoadedIndex:
    return IndexStore(folder).load()
