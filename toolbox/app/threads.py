"""Capture and compute threads that never wait on each other.

Each stage publishes into a ``LatestSlot``: one value, overwritten, with a sequence number.
Consumers take the newest value and skip whatever they missed, so a slow model drops
frames instead of building a queue, and the display never waits for the model.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import cv2

from toolbox.sources.base import FrameSource
from toolbox.sources.frame import Frame

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A single-value mailbox: ``put`` replaces, ``get`` returns (seq, value) of the newest put."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seq = 0
        self._value: T | None = None

    def put(self, value: T) -> int:
        with self._lock:
            self._seq += 1
            self._value = value
            return self._seq

    def get(self) -> tuple[int, T | None]:
        with self._lock:
            return self._seq, self._value


class RateMeter:
    """Events per second over the last ``window`` seconds (falls to 0 when events stop)."""

    def __init__(self, window: float = 1.0):
        self.window = window
        self._times: collections.deque[float] = collections.deque()
        self._start = time.perf_counter()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        with self._lock:
            self._trim(now)
            return len(self._times) / max(min(self.window, now - self._start), 1e-3)


@dataclass(frozen=True)
class Captured:
    """A frame as it left the capture thread. captured_at: time.perf_counter() at publication."""

    frame: Frame
    captured_at: float


@dataclass(frozen=True)
class CaptureStatus:
    signal: bool = True  # False while a live source delivers nothing and we reconnect
    attempts: int = 0
    ended: bool = False  # a finite, non-looping source ran out


def failure_text(error: BaseException) -> str:
    """One line for a thread's fatal error: the message of a DeepvisError, else 'Type: message'."""
    from toolbox.errors import DeepvisError

    text = str(error) if isinstance(error, DeepvisError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split()) or type(error).__name__


class GuardedThread(threading.Thread):
    """A daemon thread whose uncaught exception ends it quietly and is kept in ``failure`` (one line),
    so the window can show it and the app can exit non-zero instead of running without its input."""

    def __init__(self, name: str):
        super().__init__(name=name, daemon=True)
        self.failure = ""

    def run(self) -> None:
        try:
            self.loop()
        except Exception as error:  # noqa: BLE001 - reported by the main thread
            self.failure = failure_text(error)

    def loop(self) -> None:
        raise NotImplementedError


class CaptureThread(GuardedThread):
    """Reads the source and publishes the newest frame. The only thread that touches the source.

    Files are paced to their own frame rate unless ``paced`` is False: then the next frame is
    read as soon as ``demand()`` says the consumer took the last one (as fast as compute allows;
    as fast as the file decodes without ``demand``). Live sources are read as fast as they deliver; when they stop, the
    thread reconnects with exponential backoff between ``backoff`` (min, max) seconds.
    Transport commands (seek, step, restart) come through ``command``. ``first``: a frame already
    read from the source (the start-up check), published before anything else is read.
    """

    def __init__(self, source: FrameSource, frames: LatestSlot[Captured], wake: threading.Event,
                 paced: bool = True, backoff: tuple[float, float] = (0.25, 2.0), first: Frame | None = None):
        super().__init__(name="deepvis-capture")
        self.first = first
        self.source = source
        self.frames = frames
        self.wake = wake
        self.paced = paced
        self.backoff = backoff
        self.meter = RateMeter()
        self.status = CaptureStatus()
        self.demand: Callable[[], bool] | None = None
        self.paused = False
        self.frozen = False
        self._commands: queue.Queue = queue.Queue()
        self._halt = threading.Event()
        self._poke = threading.Event()  # interrupts the pacing sleep for commands and stop

    # --- called from other threads -------------------------------------------------------------
    def set_controls(self, paused: bool, frozen: bool) -> None:
        if (paused, frozen) != (self.paused, self.frozen):
            self.paused, self.frozen = paused, frozen
            self._poke.set()

    def command(self, kind: str, amount: float = 0.0) -> None:
        """kind: 'seek_seconds' | 'step_frames' | 'restart'."""
        self._commands.put((kind, amount))
        self._poke.set()

    def stop(self) -> None:
        self._halt.set()
        self._poke.set()

    # --- the thread ------------------------------------------------------------------------------
    def _publish(self, frame: Frame) -> None:
        self.frames.put(Captured(frame, time.perf_counter()))
        self.meter.tick()
        self.wake.set()

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake for commands, control changes and stop."""
        if seconds > 0:
            self._poke.wait(seconds)
        self._poke.clear()

    def _run_command(self, kind: str, amount: float) -> None:
        source = self.source
        if not source.seekable:
            return
        shown = max(source.position - 1, 0)  # the frame on screen
        fps = source.fps or 30.0
        target = {"seek_seconds": shown + round(amount * fps), "step_frames": shown + int(amount),
                  "restart": 0}[kind]
        count = source.frame_count
        if count:
            target = min(max(target, 0), count - 1)
        source.seek(max(target, 0))
        frame = source.read()
        if frame is not None:
            self._publish(frame)  # shown even while paused or frozen: the user asked for it

    def _reconnect(self) -> None:
        delay, attempts = self.backoff[0], 0
        while not self._halt.is_set():
            attempts += 1
            self.status = CaptureStatus(signal=False, attempts=attempts)
            self.wake.set()
            self._sleep(delay)
            if self._halt.is_set():
                return
            if self.source.reconnect():
                frame = self.source.read()
                if frame is not None:
                    self.status = CaptureStatus(signal=True)
                    self._publish(frame)
                    return
            delay = min(delay * 2, self.backoff[1])

    def loop(self) -> None:
        source = self.source
        period = 1.0 / (source.fps or 30.0)
        due = time.perf_counter()
        if self.first is not None:
            self._publish(self.first)
            due += period
        while not self._halt.is_set():
            while not self._commands.empty():
                self._run_command(*self._commands.get_nowait())
                due = time.perf_counter() + period
            held = (self.paused and source.seekable) or (self.frozen and not source.live) or self.status.ended
            if held:
                self._sleep(0.1)
                due = time.perf_counter()
                continue
            if self.paced and not source.live:
                wait = due - time.perf_counter()
                if wait > 0:
                    self._sleep(wait)
                    continue  # re-check commands and controls after every sleep
            elif not source.live and self.demand is not None and not self.demand():
                self._sleep(0.002)
                continue
            frame = source.read()
            if frame is None:
                if source.live:
                    self._reconnect()
                else:
                    self.status = CaptureStatus(ended=True)
                continue
            # Keep the pace without bursting to catch up after a stall (a slow decode, a seek).
            due = max(due + period, time.perf_counter() - period)
            if self.frozen:
                continue  # a live source is drained so that unfreezing shows the present
            self._publish(frame)


@dataclass
class ComputeStats:
    computed: int = 0
    skipped: int = 0  # frames published while the model was busy, never computed
    last_ms: float = 0.0
    total_ms: float = 0.0
    error: str = ""


class ComputeThread(GuardedThread):
    """Takes the newest frame and the newest state snapshot, runs ``step``, publishes the result.

    It recomputes when a new frame arrived or when ``step.key(state)`` changed (e.g. the mirror
    was toggled while the input is frozen). ``step(captured, state) -> result``.
    """

    def __init__(self, step: Callable[[Captured, Any], Any], frames: LatestSlot[Captured], states: LatestSlot,
                 results: LatestSlot, wake: threading.Event):
        super().__init__(name="deepvis-compute")
        self.step = step
        self.frames = frames
        self.states = states
        self.results = results
        self.wake = wake
        self.meter = RateMeter()
        self.stats = ComputeStats()
        self.taken_seq = 0  # sequence number of the newest frame taken (unpaced capture waits for it)
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.wake.set()

    def loop(self) -> None:
        done_seq, done_key = 0, None
        key_of = getattr(self.step, "key", lambda state: None)
        while not self._halt.is_set():
            self.wake.wait(0.2)
            self.wake.clear()
            if self._halt.is_set():
                break
            seq, captured = self.frames.get()
            _, state = self.states.get()
            if captured is None or state is None:
                continue
            key = key_of(state)
            if seq == done_seq and key == done_key:
                continue
            self.taken_seq = seq
            if seq > done_seq + 1 and done_seq:
                self.stats.skipped += seq - done_seq - 1
            start = time.perf_counter()
            try:
                result = self.step(captured, state)
            except Exception as exc:  # noqa: BLE001 - shown in the status line; the window stays up
                self.stats.error = f"{type(exc).__name__}: {exc}"
                done_seq, done_key = seq, key
                continue
            self.stats.last_ms = (time.perf_counter() - start) * 1000
            self.stats.total_ms += self.stats.last_ms
            self.stats.computed += 1
            self.stats.error = ""
            done_seq, done_key = seq, key
            self.results.put(result)
            self.meter.tick()


def set_cv_threads(n: int) -> None:
    """OpenCV's own pool competes with torch on small machines; the app's resizes are tiny."""
    cv2.setNumThreads(n)
