"""Snapshots: the whole window and each pane as PNG plus the state as JSON.

All files of one snapshot share a number that no earlier snapshot used (``snapshot-0007.png``,
``snapshot-0007-mosaic.png``, ..., ``snapshot-0007.json``); each is written atomically and the
JSON last, so a JSON on disk means the snapshot is complete. The number is claimed by creating the
window image's name exclusively (a hard link, which fails if the name exists): two sessions saving
into one folder at once get different numbers instead of overwriting each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolbox.atomic import encode_image, publish_exclusive, temporary_path, user_write_errors, write_image, write_json
from toolbox.render.layout import Rect


@dataclass(frozen=True)
class SnapshotFiles:
    number: int
    window: Path
    panes: dict[str, Path]
    state: Path


def snapshot_paths(directory: str | Path, pane_names, stem: str = "snapshot", start: int = 0) -> SnapshotFiles:
    """The first number n >= ``start`` with no ``stem-n*`` file in ``directory`` (never overwrites).

    Pass ``start`` = previous number + 1 when an earlier snapshot may still be being written."""
    directory = Path(directory)
    n = start
    while True:
        base = f"{stem}-{n:04d}"
        taken = directory.is_dir() and (any(directory.glob(f"{base}.*")) or any(directory.glob(f"{base}-*")))
        if not taken:
            return SnapshotFiles(n, directory / f"{base}.png",
                                 {p: directory / f"{base}-{p}.png" for p in pane_names}, directory / f"{base}.json")
        n += 1


def write_snapshot(files: SnapshotFiles, window: np.ndarray, panes: dict[str, Rect], info: dict) -> SnapshotFiles:
    """Write ``window`` (H, W, 3) uint8 BGR, its pane crops, then ``info`` + the file names as JSON;
    -> the files written, under the next free number if another session took ``files.number`` meanwhile."""
    with temporary_path(files.window) as tmp:
        with user_write_errors(files.window):
            tmp.write_bytes(encode_image(tmp, window))
            while not publish_exclusive(tmp, files.window):
                files = snapshot_paths(files.window.parent, files.panes, start=files.number + 1)
    for name, path in files.panes.items():
        r = panes[name]
        write_image(path, np.ascontiguousarray(window[r.y : r.y + r.h, r.x : r.x + r.w]))
    info = {**info, "files": {"window": files.window.name, "panes": {k: v.name for k, v in files.panes.items()}}}
    write_json(files.state, info)
    return files
