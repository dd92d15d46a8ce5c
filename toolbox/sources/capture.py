"""Sources read through cv2.VideoCapture: video files, cameras, network streams."""
from __future__ import annotations

import os
import time
from pathlib import Path

import cv2

from toolbox.errors import DeepvisError
from toolbox.sources.base import FrameSource
from toolbox.sources.convert import to_bgr8
from toolbox.sources.frame import Frame

# OpenCV and FFmpeg print several lines to stderr for every missing camera or dropped stream;
# our own one-line messages are enough. (toolbox/__init__.py sets the environment variables
# before cv2 is first imported; this covers a cv2 imported earlier by the user's code.)
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

STREAM_TIMEOUT_MS = 2000  # a frozen stream otherwise blocks read() for 30 s


class VideoFileSource(FrameSource):
    """A video file. Seekable; optionally loops back to the start at the end."""

    seekable = True

    def __init__(self, path: str | os.PathLike, loop: bool = False, name: str | None = None):
        self.path = Path(path)
        self.name = name or self.path.name
        self.loop = loop
        if not self.path.is_file():
            raise DeepvisError(f"video file not found: {self.path} (check the path)")
        self._cap = cv2.VideoCapture(str(self.path))
        ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok:
            self._cap.release()
            raise DeepvisError(
                f"cannot decode video {self.path}: the file is damaged or not a video OpenCV reads "
                "(re-encode it, e.g. ffmpeg -i in.mov out.mp4)"
            )
        self._fps = self._cap.get(cv2.CAP_PROP_FPS) or 0.0
        if not 1.0 <= self._fps <= 1000.0:
            self._fps = 30.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self._count = count if count > 0 else None
        self._pending = first  # the first frame was decoded to validate the file
        self._next = 0

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def frame_count(self) -> int | None:
        return self._count

    @property
    def position(self) -> int:
        return self._next

    def read(self) -> Frame | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, image = self._cap.read()
            if not ok:
                if self._count is None:  # the container lied about its length: learn it now
                    self._count = self._next
                if not self.loop or self._next == 0:
                    return None
                self.seek(0)
                return self.read()
        frame = Frame(to_bgr8(image), self._next, self._next / self._fps)
        self._next += 1
        return frame

    def seek(self, index: int) -> None:
        index = max(0, index)
        if self._count is not None:
            index = min(index, self._count - 1)
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self._pending = None
        self._next = index

    def close(self) -> None:
        self._cap.release()


class _LiveCapture(FrameSource):
    """A device or stream that delivers frames in real time, numbered as they arrive.

    Subclasses say how to open the capture; reading, reconnecting and closing are shared.
    """

    live = True

    def __init__(self, name: str):
        self.name = name
        self._count = 0
        self._t0 = time.monotonic()
        self._cap = self._open()

    def _open(self) -> cv2.VideoCapture:
        raise NotImplementedError

    @property
    def position(self) -> int:
        return self._count

    def read(self) -> Frame | None:
        # isOpened() stays True after a stream's server dies: failure shows only as read() == False.
        ok, image = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok:
            return None
        frame = Frame(to_bgr8(image), self._count, time.monotonic() - self._t0)
        self._count += 1
        return frame

    def reconnect(self) -> bool:
        self._cap.release()
        self._cap = self._open()
        return self._cap.isOpened()

    def close(self) -> None:
        self._cap.release()


class CameraSource(_LiveCapture):
    """A local camera by index (0 is the default webcam)."""

    def __init__(self, index: int):
        self.index = index
        super().__init__(f"camera {index}")
        if not self._cap.isOpened():
            self._cap.release()
            raise DeepvisError(
                f"no camera at index {index}: connect a camera, try another index, "
                "or use a video instead (e.g. 'deepvis live demo')"
            )

    def _open(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.index)

    @property
    def fps(self) -> float | None:
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        return fps if fps and fps > 0 else None


class StreamSource(_LiveCapture):
    """A network stream (http MJPEG camera, rtsp). Reads time out after 2 s instead of blocking."""

    def __init__(self, url: str, check: bool = True):
        self.url = url
        super().__init__(url)
        if check and not self._cap.isOpened():
            self._cap.release()
            raise DeepvisError(f"cannot open stream {url}: check the URL and that the camera or server is up")

    def _open(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
