"""What the dream and the inversion/style plugins share: pictures made from the frames on screen by
background tasks, shown in the mosaic pane under a caption, with a flag in the status line.

Two kinds of task per plugin:

- a one-shot task on the frame on screen (a dream, an inversion): its ``Shot`` (the frame, then the
  picture and where it was saved) replaces the mosaic pane while the plugin's view is open, dimmed
  with a percentage while it runs; the plugin's key or any layer/channel move closes the view.
- a loop that remakes each newest frame (live dream, stylise) while ``AppState.mode`` is the
  plugin's mode, through a stepper with ``step(image, cancel) -> image``, ``reset()``, ``fps``;
  its latest ``LiveFrame`` fills the mosaic pane.

``FrameTasks`` holds both and draws them; a plugin subclasses it with its state keys, its
``Captions``, how it starts a shot (``start_shot``) and which loop the state asks for
(``follow_mode``). Reducers only change ``AppState``; ``stage`` runs in the compute thread and
starts/stops tasks; the tasks run in their own threads at a lower priority; ``pane`` and
``status_flag`` run wherever the window is rendered and only read.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from toolbox.app.compute import LiveResult
from toolbox.app.state import AppState, Effect, Transition, with_extras, with_request
from toolbox.app.tasks import TaskContext, TaskRunner, lower_priority, throttled
from toolbox.app.threads import Captured, LatestSlot
from toolbox.atomic import write_unique_image
from toolbox.render.panes import labelled_pane

SEEK_FRAMES = 30  # a jump of more frames than this (or backwards) is a seek or a loop: no flow across it
CAPTION_SCALE = 0.5  # font scale of the pane's caption


def view_is_open(state: AppState, key: str) -> bool:
    """A plugin's view is shown: extras[key] holds the layer and channel where its key opened it,
    and they are still selected (any layer/channel move closes it)."""
    return state.extras.get(key) == (state.layer, state.channel)


def toggle_shot_view(state: AppState, request_key: str, view_key: str, message: str) -> Transition | AppState:
    """What a plugin's one-shot key does: close its view where it is open, else request a shot of the
    frame on screen and open the view at the selected layer and channel, saying ``message``."""
    if view_is_open(state, view_key):
        return with_extras(state, **{view_key: None})
    return Transition(with_request(state, request_key, **{view_key: (state.layer, state.channel)}),
                      (Effect("message", text=message),))


def shrunk(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 with its long side cut to ``max_side`` (never enlarged)."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    k = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


def newest_frames(frames: LatestSlot[Captured], stop: Callable[[], bool]):
    """Yield (captured, jumped) for each new frame of the mailbox until ``stop()``; frames that arrive
    while the caller works are skipped. jumped: the frame index moved backwards or by more than
    SEEK_FRAMES since the last one (a seek or a loop: no optical flow links the two)."""
    last_seq, last_index = 0, None
    while not stop():
        seq, captured = frames.get()
        if captured is None or seq == last_seq:
            time.sleep(0.005)
            continue
        last_seq, index = seq, captured.frame.index
        jumped = last_index is not None and not 0 < index - last_index <= SEEK_FRAMES
        last_index = index
        yield captured, jumped


def captioned_pane(image: np.ndarray | None, caption: str, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 BGR: ``image`` fitted into a pane of ``size`` (blank if None), ``caption`` on a dark band."""
    return labelled_pane(image, caption, *size, font_scale=CAPTION_SCALE)


@dataclass
class Shot:
    """One picture of one frame: written by its task, read by the pane. image: (H, W, 3) uint8 BGR."""

    request: int
    source: np.ndarray  # (H, W, 3) uint8 BGR, the frame it was made from
    label: str  # "_blocks.8 classic"
    image: np.ndarray | None = None
    path: Path | None = None
    cancelled: bool = False
    error: str = ""


@dataclass(frozen=True)
class LiveFrame:
    image: np.ndarray  # (H, W, 3) uint8 BGR, the remade frame
    fps: float
    label: str  # what made it ("_blocks.8 classic", a style's name)


@dataclass(frozen=True)
class Captions:
    """The words of a plugin's pane captions and status flags."""

    plugin: str  # names its errors: "dream error: ..."
    shot: str  # the one-shot task: "dream failed", "inversion ... cancelled"
    making: str  # ... while it runs: "dreaming 40%"
    made: str  # ... its result, with {label}: "dream {label} - saved dream-0001.png"
    live: str  # the loop: "live dream 2.1 fps"


class FrameTasks:
    """The one-shot task and the loop of one plugin in one live window, and what they produced.

    Subclasses set the class attributes and define ``start_shot`` and ``follow_mode``.
    config: the plugin's section of the config. frames: the app's newest-frame mailbox (the loop
    reads it directly, so it keeps its own pace). snapshot_dir: where shots are saved. mosaic_size:
    (h, w) of the pane it draws in. alive: False once the app shuts down; the loop (which Esc must
    not cancel, so the task runner's shutdown does not either) ends then.
    """

    captions: Captions
    mode: str  # AppState.mode while the loop runs
    request_key: str  # extras: int, bumped by each key press that starts a shot
    view_key: str  # extras: (layer, channel) where the shot's view was opened, or None
    shot_task: str  # task names
    live_task: str

    def __init__(self, model, layers, tasks: TaskRunner, config, frames: LatestSlot[Captured],
                 snapshot_dir: str | Path, mosaic_size: tuple[int, int], alive: Callable[[], bool] = lambda: True):
        self.model, self.layers, self.tasks, self.config = model, layers, tasks, config
        self.frames, self.snapshot_dir, self.mosaic_size = frames, Path(snapshot_dir), mosaic_size
        self.alive = alive
        self.shot: Shot | None = None
        self.live: LiveFrame | None = None
        self.live_frames = 0  # frames remade by the loop so far (tests, benchmarks)
        self.error = ""
        self._seen_request = 0
        self._live_key: tuple | None = None  # what the running loop was started with

    def view_open(self, state: AppState) -> bool:
        return view_is_open(state, self.view_key)

    # compute thread ---------------------------------------------------------------------------------
    def start_shot(self, image: np.ndarray, state: AppState, request: int):
        """Start the one-shot task on (H, W, 3) uint8 BGR ``image`` (the frame as shown)."""
        raise NotImplementedError

    def follow_mode(self, state: AppState) -> None:
        """Start, restart or stop the loop as ``state`` asks."""
        raise NotImplementedError

    def stage(self, result: LiveResult, state: AppState) -> None:
        """After each forward: start a requested shot; keep the loop in step with the mode."""
        try:
            request = int(state.extras.get(self.request_key, 0))
            if request != self._seen_request:
                self._seen_request = request
                if request:
                    frame = result.captured.frame.image
                    self.start_shot(frame[:, ::-1] if state.mirror else frame, state, request)
            self.follow_mode(state)
            self.error = ""
        except Exception as exc:  # noqa: BLE001 - the frame's result must still be shown
            self.error = f"{type(exc).__name__}: {exc}"

    # tasks (their own threads) ------------------------------------------------------------------------
    def run_shot(self, task: TaskContext, shot: Shot, prefix: str,
                 make: Callable[[Callable[[float], None], Callable[[], bool]], tuple[np.ndarray, bool]]
                 ) -> Path | None:
        """Run ``make(progress, cancelled) -> (image, cancelled)`` for ``shot`` (progress: a fraction
        in [0, 1]) and save a finished image as ``prefix-NNNN.png`` beside the snapshots; -> its path
        (None when cancelled)."""
        lower_priority()
        try:
            image, cancelled = make(throttled(task.report), task.cancelled)
        except Exception as exc:
            shot.error = f"{type(exc).__name__}: {exc}"
            raise
        shot.image = image
        if cancelled:
            shot.cancelled = True
            return None
        shot.path = write_unique_image(self.snapshot_dir, prefix, ".png", image)
        return shot.path

    def keep_live(self, key: tuple, loop: Callable[[TaskContext], int], label: str) -> None:
        """Run ``loop`` as the plugin's loop task unless one started with ``key`` runs (or failed:
        shown in the status line; a change of ``key`` retries)."""
        handle = self.tasks.latest(self.live_task)
        if handle is not None and self._live_key == key and (handle.running or handle.status == "failed"):
            return
        self._live_key = key
        self.tasks.start(self.live_task, loop, label=label, cancellable=False)  # its key stops it; Esc quits

    def stop_live(self) -> None:
        if self._live_key is not None:
            self.tasks.cancel(self.live_task)
            self._live_key = None
            self.live = None

    def run_live(self, task: TaskContext, stepper, mirror: bool, label: Callable[[], str]) -> int:
        """Remake each newest frame with ``stepper`` until cancelled or the app ends; frames it is too
        slow for are skipped, so capture and display keep their pace. -> frames remade."""
        lower_priority()
        stop = lambda: task.cancelled() or not self.alive()  # noqa: E731
        done = 0
        for captured, jumped in newest_frames(self.frames, stop):
            if jumped:
                stepper.reset()  # a seek, a step back or a loop: the flow would link unrelated frames
            image = captured.frame.image
            out = stepper.step(np.ascontiguousarray(image[:, ::-1]) if mirror else image, cancel=stop)
            if stop():
                break
            self.live = LiveFrame(out, stepper.fps, label())
            done += 1
            self.live_frames += 1
            task.report(0.0)  # bumps the tasks' version: the pane is redrawn with the new frame
        return done

    # pane provider and status (any thread; read only) -------------------------------------------------
    def pane(self, result: LiveResult, state: AppState) -> np.ndarray | None:
        """(h, w, 3) uint8 BGR for the mosaic pane: the shot's view, else the loop's frame, else None."""
        words = self.captions
        if self.view_open(state):
            shot = self.shot
            if shot is None or shot.request != state.extras.get(self.request_key, 0):  # not staged yet
                return captioned_pane(None, f"{words.making}...", self.mosaic_size)
            return captioned_pane(*self.shot_view(shot), self.mosaic_size)
        if state.mode == self.mode:
            live = self.live
            if live is None:
                return captioned_pane(None, f"{words.live}: starting..." + (f" {self.error}" if self.error else ""),
                                      self.mosaic_size)
            return captioned_pane(live.image, f"{words.live} {live.label} {live.fps:.1f} fps", self.mosaic_size)
        return None

    def shot_view(self, shot: Shot) -> tuple[np.ndarray, str]:
        """(the picture, its caption) for the shot at its present stage: running, failed, cancelled, saved."""
        words = self.captions
        if shot.error:
            return shot.source, f"{words.shot} failed: {shot.error}"
        if shot.path is not None:
            return shot.image, f"{words.made.format(label=shot.label)} - saved {shot.path.name}"
        if shot.cancelled:
            return shot.image, f"{words.shot} {shot.label} cancelled (partial, not saved)"
        handle = self.tasks.latest(self.shot_task)
        progress = handle.progress if handle is not None else 0.0
        dimmed = (shot.source.astype(np.uint16) // 2).astype(np.uint8)
        return dimmed, f"{words.making} {shot.label} {progress * 100:.0f}% (Esc cancels)"

    def status_flag(self, state: AppState) -> str | None:
        words = self.captions
        if self.error:
            return f"{words.plugin} error: {self.error}"
        shot = self.shot
        if shot is not None and shot.error and self.view_open(state):
            return f"{words.shot} failed: {shot.error}"
        if state.mode == self.mode:
            handle, live = self.tasks.latest(self.live_task), self.live
            if handle is not None and handle.status == "failed":
                return f"{words.live} failed: {handle.error}"
            return f"{words.live} {live.fps:.1f} fps" if live is not None else f"{words.live} starting"
        return None


def mosaic_size(app) -> tuple[int, int]:
    """(h, w) of the app's mosaic pane (of its first pane where the layout has none)."""
    panes = app.view.panes
    mosaic = panes.get("mosaic") or next(iter(panes.values()))
    return mosaic.h, mosaic.w


def install_frame_tasks(app, plugin: FrameTasks, depends_on: tuple[str, ...], torch_only: str) -> None:
    """Wire ``plugin`` into the app: its stage after each forward (when one of ``depends_on`` changes),
    its pane over the mosaic (the mosaic's earlier provider where it shows nothing), its status
    flag. An ONNX model cannot run it: then only ``torch_only`` shows, in the status line, while
    the plugin's view or mode is on."""
    if app.model.module is None:
        plugin.error = torch_only
        app.view.status_flags.append(
            lambda state: plugin.error if state.mode == plugin.mode or plugin.view_open(state) else None)
        return
    app.compute.add_stage(plugin.captions.plugin, plugin.stage, depends_on=depends_on)
    app.view.add_pane_provider("mosaic", plugin.pane)  # over e.g. the unit plugin's filter view
    app.view.status_flags.append(plugin.status_flag)
