"""Still images: one file, a folder, or a glob pattern.

A folder or pattern with some unreadable files plays the readable ones: each bad file is skipped
and listed in ``ImageListSource.skipped`` (path and reason) for the job or the window to report.
One bad file given on its own is an error.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from toolbox.errors import DeepvisError
from toolbox.sources.base import FrameSource
from toolbox.sources.convert import to_bgr8
from toolbox.sources.frame import Frame

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 BGR, or raise a one-line DeepvisError."""
    path = Path(path)
    if not path.is_file():
        raise DeepvisError(f"image file not found: {path} (check the path)")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DeepvisError(f"cannot decode image {path}: the file is damaged or not an image (use PNG or JPEG)")
    try:
        return to_bgr8(image)
    except ValueError as exc:  # e.g. 32-bit integer or 5-channel TIFF
        raise DeepvisError(f"cannot read image {path}: {exc}; convert it to 8- or 16-bit RGB (PNG or JPEG)") from None


@dataclass(frozen=True)
class SkippedFile:
    """An image of a folder that could not be read, and why (the one-line error)."""

    path: Path
    reason: str


class ImageListSource(FrameSource):
    """A list of image files shown one after another; seekable; optionally looping."""

    seekable = True

    def __init__(self, paths: list[Path], name: str, loop: bool = False, fps: float = 1.0):
        if not paths:
            raise DeepvisError(f"no images found in {name} (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.paths = paths
        self.name = name
        self.loop = loop
        self._fps = fps
        self._next = 0
        self.skipped: list[SkippedFile] = []  # bad files met so far, in the order met (each once)

    @classmethod
    def from_spec(cls, spec: str, loop: bool = False) -> "ImageListSource":
        path = Path(spec)
        if path.is_dir():
            paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            paths = [path]
        else:
            paths = sorted(Path(p) for p in glob.glob(spec) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        return cls(paths, spec, loop=loop)

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def frame_count(self) -> int:
        return len(self.paths)

    @property
    def position(self) -> int:
        return self._next

    def read(self) -> Frame | None:
        """The next readable image; bad files are skipped (``skipped``) unless this is a single file.
        DeepvisError when no file can be read at all."""
        for _ in range(len(self.paths)):
            if self._next >= len(self.paths):
                if not self.loop:
                    return None
                self._next = 0
            index = self._next
            self._next += 1
            try:
                return Frame(read_image(self.paths[index]), index, index / self._fps)
            except DeepvisError as error:
                if len(self.paths) == 1:
                    raise
                if all(s.path != self.paths[index] for s in self.skipped):
                    self.skipped.append(SkippedFile(self.paths[index], str(error)))
        if len(self.skipped) == len(self.paths):
            raise DeepvisError(f"no readable image in {self.name}: all {len(self.paths)} files are damaged or not "
                               "images (use PNG or JPEG)")
        return None

    def seek(self, index: int) -> None:
        self._next = min(max(0, index), len(self.paths) - 1)
