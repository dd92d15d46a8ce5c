"""Video files that are checked after writing: cv2.VideoWriter reports no write errors.

When the disk fills up or the file-size limit (``ulimit -f``) is reached, cv2.VideoWriter goes on
accepting frames and leaves a cut-off, unplayable file. VideoOutput counts the frames it wrote;
``finish()`` closes the file, reopens it and checks that the frame count matches and that the
last frame decodes. Only then may the caller rename the file into place.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from toolbox.errors import DeepvisError

FOURCC = {".avi": "MJPG"}  # other suffixes: mp4v
LOW_DISK_BYTES = 1 << 20


def _why_damaged(path: Path) -> str:
    """The likely reason a just-written file is incomplete: the size limit, a full disk, or unknown."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and path.stat().st_size >= limit - 65536:
            return "the file size limit was reached (ulimit -f): raise the limit or write less (--max-frames)"
    except (ImportError, OSError):
        pass
    try:
        if shutil.disk_usage(path.parent).free < LOW_DISK_BYTES:
            return "the disk is full: free some space or choose another --out"
    except OSError:
        pass
    return "the video writer failed without saying why: check free space and the file-size limit"


def count_readable_frames(path: str | os.PathLike) -> int:
    """Frames a reader finds in the video file ``path`` (0 if it does not open), checked by decoding
    the last one: a header promising frames whose data was cut off counts as 0."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            return 0
        if count > 1:
            capture.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
        ok, _ = capture.read()
        return count if ok else 0
    finally:
        capture.release()


class VideoOutput:
    """Write (H, W, 3) uint8 BGR frames of one ``size`` = (width, height) to ``path`` at ``fps``.

    ``name`` is what error messages call the file (the final name when ``path`` is a temporary).
    The codec follows the suffix: MJPG for .avi, mp4v otherwise.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], name: str | os.PathLike | None = None):
        self.path = Path(path)
        self.name = Path(name) if name is not None else self.path
        self.size = size
        self.frames = 0
        fourcc = cv2.VideoWriter_fourcc(*FOURCC.get(self.path.suffix.lower(), "mp4v"))
        self._writer = cv2.VideoWriter(str(self.path), fourcc, fps, size)
        if not self._writer.isOpened():
            raise DeepvisError(f"cannot write video {self.name}: check that the folder is writable and the suffix "
                               "is .mp4 or .avi")

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Close the file (idempotent); no check."""
        self._writer.release()

    def finish(self) -> Path:
        """Close the file and check it holds every frame written; -> path. DeepvisError if not."""
        self.close()
        readable = count_readable_frames(self.path)
        if readable != self.frames:
            raise DeepvisError(f"cannot write video {self.name}: {_why_damaged(self.path)} "
                               f"({readable} of {self.frames} frames readable)")
        return self.path
