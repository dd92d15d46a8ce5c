"""deepvis map: a 2-D map of an index drawn as an atlas of thumbnails, plus the coordinates as CSV."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolbox.analysis.latent.maps import METHODS, FeatureMap, fit_map
from toolbox.atomic import write_image, write_text
from toolbox.errors import DeepvisError
from toolbox.jobs.index_store import LoadedIndex, load_index
from toolbox.render.atlas import atlas_figure, atlas_plot, categorical_colours, legend_panel, ramp_colours, ramp_legend

COLOURINGS = ("class", "source", "time")
LEGEND_W = 260


@dataclass(frozen=True)
class MapResult:
    image: Path
    coords: Path
    fitted: FeatureMap


def point_colours(index: LoadedIndex, color: str, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) uint8 BGR colours of the items by class, source or time, and the legend pane."""
    if color == "time":
        colours, (low, high) = ramp_colours(np.array([i["time"] for i in index.items]))
        return colours, ramp_legend(low, high, height, LEGEND_W, "time in source")
    labels = [str(i["class"]) if color == "class" else Path(str(i["source"])).name for i in index.items]
    colours, entries = categorical_colours(labels)
    return colours, legend_panel(entries, height, LEGEND_W, f"{color} (points)")


def coords_csv(index: LoadedIndex, coords: np.ndarray) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", "x", "y", "source", "frame", "time", "class"])
    for i, (item, (x, y)) in enumerate(zip(index.items, coords)):
        writer.writerow([i, f"{x:.6f}", f"{y:.6f}", item["source"], item["frame"], item["time"], item["class"]])
    return out.getvalue()


def draw_map(index_dir: str | Path, out: str | Path, method: str = "pca", color: str = "class", seed: int = 0,
             grid: int = 24, side: int = 720) -> MapResult:
    """Fit the map, write the atlas to ``out`` (.png) and the coordinates beside it (.csv)."""
    if method not in METHODS:
        raise DeepvisError(f"--method {method}: choose one of {', '.join(METHODS)}")
    if color not in COLOURINGS:
        raise DeepvisError(f"--color {color}: choose one of {', '.join(COLOURINGS)}")
    if not 2 <= grid <= 200:
        raise DeepvisError(f"--grid {grid}: give a number of cells per side between 2 and 200")
    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise DeepvisError(f"--out {out}: give an image path ending in .png or .jpg")
    index = load_index(index_dir)
    fitted = fit_map(index.vectors, method, seed)
    colours, legend = point_colours(index, color, side)
    plot, _ = atlas_plot(fitted.coords, index.thumbnails, colours, side, grid)
    title = (f"{method.upper() if method == 'pca' else method} map of {len(index)} frames, "
             f"{index.recipe.model} {index.recipe.layer} ({index.recipe.pool}), seed {seed}")
    image = write_image(out, atlas_figure(plot, legend, title))
    coords = write_text(out.with_suffix(".csv"), coords_csv(index, fitted.coords))
    return MapResult(image, coords, fitted)
