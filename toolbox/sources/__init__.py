"""Frame sources: everything that yields pictures to the model.

``open_source(spec)`` turns what a user types into a source:
``0`` (camera index), ``demo`` / ``bikes`` / ``bigbuckbunny`` (bundled clips),
a video file, an image file, a folder or glob of images, or an http/rtsp URL.
"""
from __future__ import annotations

from pathlib import Path

from toolbox.errors import DeepvisError
from toolbox.sources.base import FrameSource
from toolbox.sources.capture import CameraSource, StreamSource, VideoFileSource
from toolbox.sources.demo import DEMO_CLIPS, demo_clip_path
from toolbox.sources.frame import Frame
from toolbox.sources.images import IMAGE_SUFFIXES, ImageListSource, read_image

STREAM_SCHEMES = ("http://", "https://", "rtsp://", "rtmp://", "udp://", "tcp://")

__all__ = ["Frame", "FrameSource", "open_source", "read_image", "demo_clip_path"]


def open_source(spec: str, loop: bool = False) -> FrameSource:
    """Open the source a user named. Raises DeepvisError with a one-line fix on failure."""
    spec = str(spec)
    if spec.isdigit():
        return CameraSource(int(spec))
    if spec in DEMO_CLIPS:
        return VideoFileSource(demo_clip_path(spec), loop=loop, name=spec)
    if spec.lower().startswith(STREAM_SCHEMES):
        return StreamSource(spec)
    path = Path(spec)
    if path.is_dir() or any(ch in spec for ch in "*?["):
        return ImageListSource.from_spec(spec, loop=loop)
    if not path.exists():
        raise DeepvisError(
            f"no such file or folder: {spec} (give a video, an image, a folder, a camera index like 0, "
            "a URL, or 'demo')"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageListSource([path], spec, loop=loop)
    return VideoFileSource(path, loop=loop)
