"""Top-k patches: for every channel of a layer, the k strongest responses seen so far in a stream.

Each frame contributes at most one entry per channel: the channel's spatial maximum, with the
crop of the model view under that unit's receptive field (clipped at the borders). So the nine
patches of a channel come from nine different frames, as in the Deep Visualization Toolbox. A frame
offered again under the same index (a still image, a folder or a video that loops) adds no copy of a
patch the channel already holds: while the channel has fewer than k patches, it adds that frame's
next strongest place whose crop overlaps none of the frame's patches, so a still image fills the
top-9 with nine distinct places (as far as the receptive field leaves room), not copies of one eye.
The per-frame work is one max over the (C, H, W) tensor and a comparison with the current k-th
values; Python only touches the channels whose top-k actually changed.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from toolbox.models.receptive_field import ReceptiveField


@dataclass(frozen=True)
class Patch:
    """One maximum: value, frame index, feature-map location (i, j), clipped box (y0, x0, y1, x1)
    in the model view, and the crop (h, w, 3) uint8 BGR (shared, treat as read-only)."""

    value: float
    frame_index: int
    location: tuple[int, int]
    box: tuple[int, int, int, int]
    image: np.ndarray

    def record(self) -> dict:
        return {"value": round(self.value, 6), "frame": self.frame_index, "y": self.location[0],
                "x": self.location[1], "box": list(self.box)}


def boxes_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Two (y0, x0, y1, x1) boxes share at least one pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class TopPatches:
    """Running top-``k`` per channel. ``update`` from one thread, ``patches`` from any (locked)."""

    def __init__(self, field: ReceptiveField, channels: int, k: int = 9):
        self.field, self.channels, self.k = field, channels, k
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._values = torch.full((self.channels, self.k), -torch.inf)  # each row sorted, best first
            self._patches: list[list[Patch]] = [[] for _ in range(self.channels)]
            self._frames = 0

    @property
    def frames_seen(self) -> int:
        return self._frames

    def update(self, frame_view: np.ndarray, activation: torch.Tensor, frame_index: int | None = None) -> int:
        """Offer one frame: view (S, S, 3) uint8 BGR the model saw, activation (C, H, W) of the layer.
        Returns how many channels gained a patch."""
        if activation.dim() != 3 or activation.shape[0] != self.channels:
            raise ValueError(f"expected a ({self.channels}, H, W) activation, got {tuple(activation.shape)}")
        h, w = activation.shape[-2:]
        best, where = activation.detach().flatten(1).float().max(dim=1)
        best, where = best.cpu(), where.cpu()
        with self._lock:
            index = self._frames if frame_index is None else frame_index
            self._frames += 1
            improved = torch.nonzero(best > self._values[:, -1]).flatten().tolist()
            if not improved:
                return 0
            frame = np.array(frame_view, copy=True)  # large crops share this one copy
            vh, vw = frame.shape[:2]
            added = 0
            for c in improved:
                value = float(best[c])
                i, j = divmod(int(where[c]), w)
                box = self.field.clipped_box(i, j, vh, vw)
                taken = [p.box for p in self._patches[c] if p.frame_index == index]
                if any(boxes_overlap(t, box) for t in taken):
                    if len(self._patches[c]) >= self.k:
                        continue  # the same frame again, and the row is full: nothing new to add
                    place = self._next_free_place(activation[c], taken, vh, vw)
                    if place is None:
                        continue  # every place of this frame overlaps a patch already kept
                    value, (i, j), box = place
                added += 1
                crop = frame[box[0] : box[2], box[1] : box[3]]
                if crop.size * 4 < frame.size:
                    crop = crop.copy()  # small crops must not keep whole frames alive
                row = self._values[c]
                position = int((row >= value).sum())  # after equal values: earlier frames win ties
                self._values[c, position + 1 :] = row[position:-1].clone()
                self._values[c, position] = value
                patches = self._patches[c]
                patches.insert(position, Patch(value, index, (i, j), box, crop))
                del patches[self.k :]
            return added

    def _next_free_place(self, channel_map: torch.Tensor, taken: list[tuple[int, int, int, int]], vh: int,
                         vw: int) -> tuple[float, tuple[int, int], tuple[int, int, int, int]] | None:
        """The strongest (value, (i, j), clipped box) of an (H, W) map whose box overlaps none of
        ``taken``; None when there is none."""
        h, w = channel_map.shape
        ii, jj = np.mgrid[0:h, 0:w]
        if self.field.is_global:
            return None  # one box covers the whole frame: only one place exists
        sy, sx = self.field.stride
        oy, ox = self.field.offset
        y0 = np.maximum(oy + ii * sy, 0)
        x0 = np.maximum(ox + jj * sx, 0)
        y1 = np.minimum(oy + ii * sy + self.field.size[0], vh)
        x1 = np.minimum(ox + jj * sx + self.field.size[1], vw)
        free = np.ones((h, w), bool)
        for ty0, tx0, ty1, tx1 in taken:
            free &= ~((y0 < ty1) & (ty0 < y1) & (x0 < tx1) & (tx0 < x1))
        if not free.any():
            return None
        values = channel_map.detach().float().cpu().numpy()
        flat = int(np.argmax(np.where(free, values, -np.inf)))
        i, j = divmod(flat, w)
        return float(values[i, j]), (i, j), (int(y0[i, j]), int(x0[i, j]), int(y1[i, j]), int(x1[i, j]))

    def patches(self, channel: int) -> list[Patch]:
        """The channel's best patches so far, strongest first (at most k)."""
        with self._lock:
            return list(self._patches[channel])

    def values(self) -> torch.Tensor:
        """(C, k) the top values per channel, best first; -inf where fewer than k frames were seen."""
        with self._lock:
            return self._values.clone()

    def summary(self) -> dict:
        """JSON-ready: receptive field, k, frames seen, and per channel its maxima."""
        with self._lock:
            f = self.field
            return {
                "k": self.k,
                "frames_seen": self._frames,
                "receptive_field": {"size": list(f.size), "stride": list(f.stride), "offset": list(f.offset),
                                    "global": f.is_global},
                "channels": [{"channel": c, "maxima": [p.record() for p in ps]} for c, ps in enumerate(self._patches)],
            }

    @classmethod
    def merged(cls, field: ReceptiveField, parts: list[list[list[Patch]]], frames_seen: int, k: int = 9) -> "TopPatches":
        """The tracker that one pass over consecutive stretches of a stream would have built, from
        each stretch's per-channel patches (``parts`` in stream order; each a list of C lists, best
        first); ``frames_seen`` the frames offered in all. Ties keep the earlier frame, as ``update`` does."""
        channels = len(parts[0])
        merged = cls(field, channels, k)
        for c in range(channels):
            candidates = [p for part in parts for p in part[c]]
            best = sorted(candidates, key=lambda p: -p.value)[:k]  # stable: earlier stretches first on ties
            merged._patches[c] = best
            merged._values[c, : len(best)] = torch.tensor([p.value for p in best], dtype=torch.float32)
        merged._frames = frames_seen
        return merged

    def per_channel(self) -> list[list[Patch]]:
        """Every channel's patches, best first (a snapshot; the patches themselves are shared)."""
        with self._lock:
            return [list(ps) for ps in self._patches]
