"""What the live window has seen: the last ``capacity`` frames' vectors and thumbnails, searched by
brute force (a few thousand vectors take well under a millisecond per query)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix @ vector through torch, so it runs on torch's intra-op threads (one in the live compute
    thread) rather than on a BLAS pool that waits for busy cores."""
    return torch.from_numpy(matrix).mv(torch.from_numpy(vector)).numpy()


@dataclass(frozen=True)
class Remembered:
    """One kept frame: its index in the source, media time in seconds, thumbnail (t, t, 3) uint8 BGR."""

    frame: int
    time: float
    thumbnail: np.ndarray
    label: str = ""


class RollingMemory:
    """A ring buffer of (vector, Remembered). A frame whose vector lies within ``duplicate_ratio``
    (relative L2 distance) of any kept one is skipped, so neither a still scene nor a looping video
    fills it with copies.
    Thread-safe: the compute thread offers and searches, the draw thread only reads results."""

    def __init__(self, capacity: int = 4096, duplicate_ratio: float = 0.05):
        self.capacity = capacity
        self.duplicate_ratio = duplicate_ratio
        self._vectors: np.ndarray | None = None
        self._norms2: np.ndarray | None = None
        self._items: list[Remembered | None] = [None] * capacity
        self._count = 0  # frames kept so far (the slot of the next one is _count % capacity)
        self._lock = threading.Lock()
        # (vector offered last, its squared distances to the slots after the offer): a search for the
        # same vector (the live frame's neighbours) reuses them instead of a second pass over the memory
        self._offered: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return min(self._count, self.capacity)

    def offer(self, vector: np.ndarray, item: Remembered) -> bool:
        """Keep ``vector`` (D,) unless it nearly repeats a kept one; True when kept."""
        offered, vector = vector, np.asarray(vector, np.float32).ravel()
        with self._lock:
            if self._vectors is None:
                self._vectors = np.zeros((self.capacity, vector.size), np.float32)
                self._norms2 = np.zeros(self.capacity, np.float32)
            n = len(self)
            d2 = np.zeros(0, np.float32)
            if n:
                q2 = float(vector @ vector)
                d2 = self._norms2[:n] - 2.0 * _matvec(self._vectors[:n], vector) + q2
                if float(d2.min()) <= self.duplicate_ratio ** 2 * max(q2, 1e-24):
                    self._offered = (offered, d2)
                    return False
            slot = self._count % self.capacity
            d2 = np.append(d2, np.float32(0.0)) if slot == n else d2
            d2[slot] = 0.0  # the new frame itself
            self._offered = (offered, d2)
            self._vectors[slot] = vector
            self._norms2[slot] = float(vector @ vector)
            self._items[slot] = item
            self._count += 1
            return True

    def search(self, query: np.ndarray, k: int) -> list[tuple[float, Remembered]]:
        """The k kept frames nearest to ``query`` (D,) in L2, nearest first, as (distance, item)."""
        with self._lock:
            n = len(self)
            if n == 0 or self._vectors is None:
                return []
            if self._offered is not None and self._offered[0] is query and len(self._offered[1]) == n:
                d2 = self._offered[1]
            else:
                q = np.asarray(query, np.float32).ravel()
                d2 = self._norms2[:n] - 2.0 * _matvec(self._vectors[:n], q) + float(q @ q)
            k = min(k, n)
            ids = np.argpartition(d2, k - 1)[:k] if k < n else np.arange(n)
            ids = ids[np.argsort(d2[ids], kind="stable")]
            return [(float(np.sqrt(max(d2[i], 0.0))), self._items[i]) for i in ids]

    def _order(self) -> np.ndarray:
        """Slots oldest first."""
        n = len(self)
        start = self._count % self.capacity if self._count > self.capacity else 0
        return (np.arange(n) + start) % max(n, 1)

    def vectors(self) -> np.ndarray:
        """(n, D) copy of the kept vectors, oldest first."""
        with self._lock:
            if self._vectors is None or len(self) == 0:
                return np.zeros((0, 0), np.float32)
            return self._vectors[self._order()]

    def items(self) -> list[Remembered]:
        """The kept frames, oldest first (in the order of ``vectors``)."""
        with self._lock:
            return [self._items[i] for i in self._order()]

    def snapshot(self) -> tuple[np.ndarray, list[Remembered]]:
        """(vectors, items) taken together, oldest first."""
        with self._lock:
            if self._vectors is None or len(self) == 0:
                return np.zeros((0, 0), np.float32), []
            order = self._order()
            return self._vectors[order], [self._items[i] for i in order]
