"""Still images: one file, a folder, or a glob pattern."""
from __future__ import annotations

import glob
import os
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
    except ValueError as error:
        raise DeepvisError(f"cannot use image {path}: {error} (save it as 8- or 16-bit PNG or JPEG)") from None


class ImageListSource(FrameSource):
    """A list of image files shown one after another; seekable; optionally looping.

    A file that cannot be decoded is passed over and listed in ``skipped``; when no file of the list
    can be decoded, ``read`` raises the DeepvisError (the file's own message for a single file).
    """

    seekable = True

    def __init__(self, paths: list[Path], name: str, loop: bool = False, fps: float = 1.0):
        if not paths:
            raise DeepvisError(f"no images found in {name} (expected {', '.join(sorted(IMAGE_SUFFIXES))})")
        self.paths = paths
        self.name = name
        self.loop = loop
        self._fps = fps
        self._next = 0
        self._unreadable: dict[Path, str] = {}  # path -> why, in the order they were met

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

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return list(self._unreadable.items())

    def read(self) -> Frame | None:
        for _ in range(len(self.paths)):  # at most one pass over the list: every file may be unreadable
            if self._next >= len(self.paths):
                if not self.loop:
                    break
                self._next = 0
            index = self._next
            self._next += 1
            path = self.paths[index]
            if path in self._unreadable:
                continue
            try:
                return Frame(read_image(path), index, index / self._fps)
            except DeepvisError as error:
                self._unreadable[path] = str(error)
        if len(self._unreadable) == len(self.paths):
            if len(self.paths) == 1:
                raise DeepvisError(next(iter(self._unreadable.values())))
            raise DeepvisError(f"none of the {len(self.paths)} images in {self.name} can be decoded "
                               f"(e.g. {self.paths[0].name}): use PNG or JPEG files")
        return None

    def seek(self, index: int) -> None:
        self._next = min(max(0, index), len(self.paths) - 1)
