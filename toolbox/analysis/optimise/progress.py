"""Progress reports, cancel signals and the seed of an optimisation run."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Union

import torch

CancelSignal = Union[threading.Event, Callable[[], bool], None]


@dataclass(frozen=True)
class Progress:
    """Reported after every step: octave k of n (0-based), step i of steps, overall done/total, working size."""

    octave: int
    octaves: int
    step: int
    steps: int
    done: int
    total: int
    objective: float | None = None  # only filled when the caller asks (it costs a device sync)
    size: tuple[int, int] | None = None  # (H, W) the pixels are optimised at (smaller after an out-of-memory fallback)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


class Cancelled(Exception):
    """Raised by callers that turn a cancelled run into an exception (unit pictures)."""


def cancel_check(cancel: CancelSignal) -> Callable[[], bool]:
    """An Event, a callable returning True to stop, or None -> a callable that says whether to stop."""
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return lambda: bool(cancel())


def seeded(seed: int) -> torch.Generator:
    """The CPU generator every random draw of a run (noise start, jitter, transforms) comes from."""
    return torch.Generator().manual_seed(int(seed))
