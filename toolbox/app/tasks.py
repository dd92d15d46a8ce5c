"""Background tasks for slow work the window must not wait for (a dream, unit pictures, a snapshot).

    runner = TaskRunner()
    handle = runner.start("dream", lambda task: dream(frame, steps=50, progress=task.report,
                                                      should_stop=task.cancelled), label="dreaming")
    # each frame the window draws runner.active() as progress bars, and later shows
    # runner.latest("dream").result, with its age, in a pane.
    runner.cancel("dream")       # Esc does this for every running task

A task function receives a ``TaskContext``: ``report(fraction, label=None)`` to move the bar,
``cancelled()`` to poll, ``check()`` to raise ``TaskCancelled``. Starting a task under a name
that is running cancels the old one first (a newer request supersedes an older one).

A task body calls ``lower_priority()`` first when it is CPU-heavy, and wraps fine-grained progress
in ``throttled(task.report)``.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

REPORT_EVERY_S = 0.1  # progress reports redraw the window: a few per second are enough
# Background threads run at a lower priority (Linux: per-thread niceness): on a small CPU they take
# only the time that capture, compute and display leave, so the window keeps its pace.
BACKGROUND_NICE = 5


def lower_priority(nice: int = BACKGROUND_NICE) -> None:
    """Lower the calling thread's CPU priority (best effort; a no-op where unsupported)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


def throttled(report: Callable[[float], None], every_s: float = REPORT_EVERY_S) -> Callable[[float], None]:
    """``report`` called at most once every ``every_s`` seconds (each report redraws the window);
    the first call always reports."""
    last = [-float("inf")]

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            report(fraction)

    return progress


class TaskCancelled(Exception):
    """Raised by ``TaskContext.check()`` after ``cancel``; the task then ends as 'cancelled'."""


class TaskHandle:
    """One run of a task. status: 'running' | 'done' | 'cancelled' | 'failed'."""

    def __init__(self, name: str, label: str, cancellable: bool):
        self.name = name
        self.label = label
        self.cancellable = cancellable
        self.progress = 0.0
        self.status = "running"
        self.result: Any = None
        self.error = ""
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self._cancel = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def abandoned(self) -> bool:
        """Asked to stop (Esc, or superseded by a newer run) and not yet stopped: no longer shown."""
        return self._cancel.is_set()

    def age(self, now: float | None = None) -> float:
        """Seconds since the result was produced (since the start while running)."""
        now = time.monotonic() if now is None else now
        return now - (self.finished_at if self.finished_at is not None else self.started_at)

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


class TaskContext:
    """What a task function sees of its handle."""

    def __init__(self, handle: TaskHandle, on_change: Callable[[], None]):
        self._handle = handle
        self._on_change = on_change

    def report(self, fraction: float, label: str | None = None) -> None:
        self._handle.progress = min(max(float(fraction), 0.0), 1.0)
        if label is not None:
            self._handle.label = label
        self._on_change()

    def cancelled(self) -> bool:
        return self._handle._cancel.is_set()

    def check(self) -> None:
        if self.cancelled():
            raise TaskCancelled()


class TaskRunner:
    """Runs named tasks in their own daemon threads; keeps the latest handle per name."""

    def __init__(self):
        self._lock = threading.Lock()
        self._handles: dict[str, TaskHandle] = {}
        self.version = 0  # bumps on every start, progress report and end: the window redraws on change

    def _changed(self) -> None:
        self.version += 1

    def start(self, name: str, fn: Callable[[TaskContext], Any], label: str = "",
              cancellable: bool = True) -> TaskHandle:
        with self._lock:
            old = self._handles.get(name)
            if old is not None and old.running:
                old.cancel()
            handle = TaskHandle(name, label or name, cancellable)
            self._handles[name] = handle
        context = TaskContext(handle, self._changed)

        def body() -> None:
            try:
                result = fn(context)
                if context.cancelled():
                    handle.status = "cancelled"
                else:
                    handle.result, handle.progress, handle.status = result, 1.0, "done"
            except TaskCancelled:
                handle.status = "cancelled"
            except Exception as exc:  # noqa: BLE001 - reported in the window, never kills the app
                handle.error, handle.status = f"{type(exc).__name__}: {exc}", "failed"
            handle.finished_at = time.monotonic()
            self._changed()

        handle.thread = threading.Thread(target=body, name=f"deepvis-task-{name}", daemon=True)
        handle.thread.start()
        self._changed()
        return handle

    def latest(self, name: str) -> TaskHandle | None:
        with self._lock:
            return self._handles.get(name)

    def active(self) -> list[TaskHandle]:
        with self._lock:
            return [h for h in self._handles.values() if h.running]

    @property
    def busy(self) -> bool:
        """A cancellable task is running (Esc then cancels instead of quitting)."""
        return any(h.cancellable for h in self.active())

    def cancel(self, name: str | None = None) -> int:
        """Cancel one task, or every cancellable one; returns how many were asked to stop."""
        handles = self.active() if name is None else [h for h in self.active() if h.name == name]
        handles = [h for h in handles if h.cancellable or name is not None]
        for h in handles:
            h.cancel()
        return len(handles)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel what can be cancelled, then wait for every task (a snapshot being written finishes)."""
        for h in self.active():
            if h.cancellable:
                h.cancel()
        deadline = time.monotonic() + timeout
        for h in list(self._handles.values()):
            h.join(max(0.0, deadline - time.monotonic()))
