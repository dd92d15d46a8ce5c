"""Record the window to MP4 in its own thread, at a fixed rate, so playback runs in real time.

The writer samples the newest shown image every 1/fps seconds (repeating it when the display
did not change), encodes into a hidden temporary file, and renames it to
``recording-NNNN.mp4`` when stopped: a finished name is always a complete, playable file.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from toolbox.atomic import unique_path
from toolbox.errors import DeepvisError


class Recorder(threading.Thread):
    def __init__(self, directory: str | Path, size: tuple[int, int], fps: float = 30.0):
        """size: (width, height) of the window image."""
        super().__init__(name="deepvis-recorder", daemon=True)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = unique_path(directory, "recording", ".mp4")
        self._tmp = directory / f".{self.path.stem}.part.mp4"
        self.fps = fps
        self.size = size
        self.frames = 0
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            self._tmp.unlink(missing_ok=True)
            raise DeepvisError(f"cannot record to {self.path}: check that the folder is writable")
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
                self._writer.write(image)
                self.frames += 1
            due += period
            delay = due - time.perf_counter()
            if delay < -1.0:  # we fell far behind (a stalled machine): drop the backlog
                due = time.perf_counter()
            self._halt.wait(max(0.0, delay))

    def finish(self) -> Path | None:
        """Stop, close the file and give it its final name; None if nothing was recorded."""
        self._halt.set()
        if self.is_alive():
            self.join()
        self._writer.release()
        if self.frames == 0:
            self._tmp.unlink(missing_ok=True)
            return None
        os.replace(self._tmp, self.path)
        return self.path
