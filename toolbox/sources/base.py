"""The interface every frame source implements."""
from __future__ import annotations

import abc
from typing import Iterator

from toolbox.sources.frame import Frame


class FrameSource(abc.ABC):
    """A sequence of frames: a file, a folder of images, a camera or a network stream.

    ``read()`` returns the next frame, or ``None`` at the end of a finite source or when a
    live source has no frame right now (a camera that stopped, a stream that dropped);
    ``live`` tells the two apart. Seekable sources (files, image lists) support ``seek``.
    """

    name: str = "source"
    live: bool = False
    seekable: bool = False
    skipped: tuple = ()  # files passed over as unreadable (images.SkippedFile); folders of images fill it

    @abc.abstractmethod
    def read(self) -> Frame | None: ...

    @property
    def fps(self) -> float | None:
        """Native frame rate, when the source has one."""
        return None

    @property
    def frame_count(self) -> int | None:
        """Number of frames for finite sources, else None."""
        return None

    @property
    def position(self) -> int:
        """Index of the frame the next ``read()`` returns."""
        return 0

    def seek(self, index: int) -> None:
        raise NotImplementedError(f"{self.name} cannot seek")

    def reconnect(self) -> bool:
        """Try to reopen a live source; True when it delivers again."""
        return False

    def close(self) -> None:
        pass

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
