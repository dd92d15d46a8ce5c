"""Record the window to MP4 in its own thread, at a fixed rate, so playback runs in real time.

The writer samples the newest shown image every 1/fps seconds (repeating it when the display
did not change) and encodes into a hidden temporary file with a name unique to this process.
When stopped, the file is reopened and its frames counted (cv2.VideoWriter reports no write
errors: a full disk leaves a cut-off file); only a complete file gets the name
``recording-NNNN.mp4``, with a number no other file has, created exclusively so that two
sessions recording into one folder never overwrite each other.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from toolbox.atomic import part_name, publish_unique, remove_stale_parts, user_write_errors
from toolbox.errors import DeepvisError
from toolbox.video_file import VideoOutput


class Recorder(threading.Thread):
    def __init__(self, directory: str | Path, size: tuple[int, int], fps: float = 30.0):
        """size: (width, height) of the window image."""
        super().__init__(name="deepvis-recorder", daemon=True)
        self.directory = Path(directory)
        with user_write_errors(self.directory):
            self.directory.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(self.directory / "recording.mp4")
        self.path = self.directory / "recording-NNNN.mp4"  # the number is given when the file is complete
        self._tmp = part_name(self.directory / "recording.mp4")
        self.fps = fps
        self.size = size
        try:
            self._video = VideoOutput(self._tmp, fps, size, name=self.path)
        except DeepvisError:
            self._tmp.unlink(missing_ok=True)
            raise
        self._image: np.ndarray | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def offer(self, image: np.ndarray) -> None:
        """The image now on screen (not copied: callers pass a fresh array each time)."""
        with self._lock:
            self._image = image

    def run(self) -> None:
        period = 1.0 / self.fps
        due = time.perf_counter()
        while not self._halt.is_set():
            with self._lock:
                image = self._image
            if image is not None:
                self._video.write(image)
            due += period
            delay = due - time.perf_counter()
            if delay < -1.0:  # we fell far behind (a stalled machine): drop the backlog
                due = time.perf_counter()
            self._halt.wait(max(0.0, delay))

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._video.frames

    def finish(self) -> Path | None:
        """Stop, close and check the file, and give it its final name; None if nothing was recorded.
        DeepvisError (and no file) if the file is incomplete (disk full, size limit)."""
        self._halt.set()
        if self.is_alive():
            self.join()
        try:
            if self.frames == 0:
                self._video.close()
                return None
            self._video.finish()
            self.path = publish_unique(self._tmp, self.directory, "recording", ".mp4")
            return self.path
        finally:
            self._tmp.unlink(missing_ok=True)
