"""Atomic output files: written under a temporary name, renamed into place only when complete.

An interrupted run therefore never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` if the block succeeds.

    The temporary name keeps the final suffix so that writers choosing a format by
    extension (cv2.imwrite, cv2.VideoWriter) still work. On error the temporary is removed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(final: str | os.PathLike, text: str) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_text(text)
    return Path(final)


def write_json(final: str | os.PathLike, obj) -> Path:
    return write_text(final, json.dumps(obj, indent=2) + "\n")


def write_image(final: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a BGR uint8 image; the format follows the extension (.png, .jpg)."""
    with atomic_path(final) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"could not encode image {final}")
    return Path(final)


def unique_path(directory: str | os.PathLike, stem: str, suffix: str) -> Path:
    """``directory/stem-NNNN.suffix`` with the first number not yet taken (never overwrites)."""
    directory = Path(directory)
    n = 0
    while True:
        candidate = directory / f"{stem}-{n:04d}{suffix}"
        if not candidate.exists():
            return candidate
        n += 1
