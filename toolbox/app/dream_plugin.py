"""DeepDream in the live window: dream the current frame, or dream the video as it plays.

Keys (configs/keys.yaml):

    dream_frame    dream the frame on screen in the background (progress bar in the side pane, Esc
                   cancels); the dream replaces the mosaic pane and is saved beside the snapshots.
                   The same key, or any layer/channel move, returns to the normal view.
    dream_live     live-dream mode on/off (``AppState.mode == "dream"``): a few ascent steps per
                   incoming frame, seeded by the previous dream warped along the optical flow
                   (``LiveDreamer``), shown in the mosaic pane; its rate is in the status line.
    dream_preset   cycle the preset: classic / tf-tutorial.
    dream_layer    pin the dream layer to the selected layer / follow the selection again.

Threads: reducers stay pure and only change ``AppState`` (a request counter, the view, the preset,
the pinned layer, the mode). ``stage`` runs in the compute thread after each forward and acts on
those changes: it starts the one-shot dream task and starts/stops the live-dream loop task. Both
run in their own threads on the shared model (the frame capture records only the compute thread's
passes), each with its own ``DreamEngine`` (engines are not thread-safe), and never block capture,
compute or display. The
pane provider and the status flag run wherever the window is rendered and only read.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from toolbox.analysis.dream import PRESETS, DreamEngine, DreamSettings, LiveDreamer, dream, live_settings, preset
from toolbox.app.compute import LiveResult
from toolbox.app.state import AppState, Effect, LiveContext, Transition, register_action
from toolbox.app.tasks import TaskContext, TaskRunner
from toolbox.app.threads import Captured, LatestSlot
from toolbox.atomic import write_unique_image
from toolbox.config import DreamConfig
from toolbox.models.registry import LoadedModel
from toolbox.render.panes import blank_pane, fit_image
from toolbox.render.text import fit_text, put_text

LIVE_MODE = "dream"  # AppState.mode while live-dreaming
REQUEST = "dream_request"  # extras: int, bumped by each dream_frame that starts a dream
VIEW = "dream_view"  # extras: (layer, channel) where the dream view was opened, or None
PRESET = "dream_preset"  # extras: preset name (absent: the configured one)
LAYER = "dream_layer"  # extras: pinned layer index (absent or None: follow the selection)
DREAM_TASK, LIVE_TASK = "dream", "live_dream"
REPORT_EVERY_S = 0.1  # progress reports redraw the window: a few per second are enough
SEEK_FRAMES = 30  # a jump of more frames than this (or backwards) is a seek or a loop: no flow across it
CAPTION_H = 26
# Dream threads run at a lower priority (Linux: per-thread niceness): on a small CPU they take only
# the time that capture, compute and display leave, so the window keeps its pace while a dream runs.
BACKGROUND_NICE = 5


# --- key actions (pure) ---------------------------------------------------------------------------

def _with_extras(state: AppState, **changes) -> AppState:
    return dataclasses.replace(state, extras={**state.extras, **changes})


def view_open(state: AppState) -> bool:
    """The dream view is shown: opened by the dream key at this very layer and channel."""
    return state.extras.get(VIEW) == (state.layer, state.channel)


def dream_layer_index(state: AppState) -> int:
    pinned = state.extras.get(LAYER)
    return state.layer if pinned is None else int(pinned)


def preset_name(state: AppState) -> str:
    """The chosen preset; install_dream puts the configured one into the start state."""
    return str(state.extras.get(PRESET) or next(iter(PRESETS)))


@register_action("dream_frame")
def dream_frame(state: AppState, context: LiveContext) -> Transition | AppState:
    if view_open(state):
        return _with_extras(state, **{VIEW: None})
    layer = context.layers[dream_layer_index(state)].name
    return Transition(_with_extras(state, **{REQUEST: int(state.extras.get(REQUEST, 0)) + 1,
                                             VIEW: (state.layer, state.channel)}),
                      (Effect("message", text=f"dreaming on {layer} (Esc cancels)"),))


@register_action("dream_live")
def dream_live(state: AppState, context: LiveContext) -> Transition:
    on = state.mode != LIVE_MODE
    return Transition(dataclasses.replace(state, mode=LIVE_MODE if on else "live"),
                      (Effect("message", text="live dream on" if on else "live dream off"),))


@register_action("dream_preset")
def dream_preset(state: AppState, context: LiveContext) -> Transition:
    names = list(PRESETS)
    current = preset_name(state)
    following = names[(names.index(current) + 1) % len(names)] if current in names else names[0]
    return Transition(_with_extras(state, **{PRESET: following}),
                      (Effect("message", text=f"dream preset {following}"),))


@register_action("dream_layer")
def dream_layer(state: AppState, context: LiveContext) -> Transition:
    if state.extras.get(LAYER) is not None:
        return Transition(_with_extras(state, **{LAYER: None}),
                          (Effect("message", text="dream layer follows the selected layer"),))
    name = context.layers[state.layer].name
    return Transition(_with_extras(state, **{LAYER: state.layer}),
                      (Effect("message", text=f"dream layer pinned to {name}"),))


# --- settings ---------------------------------------------------------------------------------------

def dream_settings(config: DreamConfig, preset_choice: str, layer: str) -> DreamSettings:
    """The preset on ``layer``, with the configured steps/octaves when set."""
    changes = {k: v for k, v in (("steps", config.steps), ("octaves", config.octaves)) if v is not None}
    return preset(preset_choice).with_layers([layer]).replace(**changes)


def shrunk(image: np.ndarray, max_side: int) -> np.ndarray:
    """(H, W, 3) uint8 with its long side cut to ``max_side`` (never enlarged)."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    k = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


def lower_priority(nice: int = BACKGROUND_NICE) -> None:
    """Lower the calling thread's CPU priority (best effort; a no-op where unsupported)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


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
    h, w = size
    pane = blank_pane(h, w) if image is None else fit_image(image, h, w, interpolation=cv2.INTER_LINEAR)
    pane[:CAPTION_H] = (pane[:CAPTION_H].astype(np.uint16) * 3 // 10).astype(np.uint8)
    put_text(pane, fit_text(caption, w - 16, 0.5), (8, 18), 0.5)
    return pane


@dataclass
class Shot:
    """One dream of one frame: written by its task, read by the pane. image: (H, W, 3) uint8 BGR."""

    request: int
    source: np.ndarray
    label: str  # "_blocks.8 classic"
    image: np.ndarray | None = None
    path: Path | None = None
    cancelled: bool = False
    error: str = ""


@dataclass(frozen=True)
class LiveFrame:
    image: np.ndarray  # (H, W, 3) uint8 BGR, the dreamed frame
    frame_index: int
    fps: float
    label: str


class LiveDream:
    """The dream tasks of one live window and what they produced.

    frames: the app's newest-frame mailbox (the live-dream loop reads it directly, so it keeps its
    own pace). snapshot_dir: where dreams are saved. mosaic_size: (h, w) of the pane it draws in.
    alive: False once the app shuts down; the live-dream loop (which Esc must not cancel, so the
    task runner's shutdown does not either) ends then.
    """

    def __init__(self, model: LoadedModel, layers, tasks: TaskRunner, config: DreamConfig,
                 frames: LatestSlot[Captured], snapshot_dir: str | Path, mosaic_size: tuple[int, int],
                 alive: Callable[[], bool] = lambda: True):
        self.model, self.layers, self.tasks, self.config = model, layers, tasks, config
        self.frames, self.snapshot_dir, self.mosaic_size = frames, Path(snapshot_dir), mosaic_size
        self.alive = alive
        self.shot: Shot | None = None
        self.live: LiveFrame | None = None
        self.live_frames = 0  # live-dreamed frames so far (tests, benchmarks)
        self.error = ""
        self._seen_request = 0
        self._live_settings: tuple | None = None  # (settings, mirror) of the running loop
        self._lock = threading.Lock()
        self._engines: dict[DreamSettings, DreamEngine] = {}  # idle engines; a running task holds its own

    # compute thread ---------------------------------------------------------------------------------
    def settings_for(self, state: AppState) -> tuple[DreamSettings, str]:
        """(the dream settings the state asks for, a label naming its layer and preset)."""
        layer, name = self.layers[dream_layer_index(state)].name, preset_name(state)
        return dream_settings(self.config, name, layer), f"{layer} {name}"

    def stage(self, result: LiveResult, state: AppState) -> None:
        """After each forward: start a requested dream; keep the live-dream loop in step with the mode."""
        try:
            request = int(state.extras.get(REQUEST, 0))
            if request != self._seen_request:
                self._seen_request = request
                if request:
                    frame = result.captured.frame.image
                    self.start_dream(frame[:, ::-1] if state.mirror else frame, *self.settings_for(state), request)
            if state.mode == LIVE_MODE:
                self.start_live(*self.settings_for(state), state.mirror)
            else:
                self.stop_live()
            self.error = ""
        except Exception as exc:  # noqa: BLE001 - the frame's result must still be shown
            self.error = f"{type(exc).__name__}: {exc}"

    # tasks --------------------------------------------------------------------------------------------
    def _take_engine(self, settings: DreamSettings) -> DreamEngine:
        with self._lock:
            engine = self._engines.pop(settings, None)
        return engine or DreamEngine(self.model, settings)

    def _give_engine(self, settings: DreamSettings, engine: DreamEngine) -> None:
        """Keep the engine of the latest settings for the next dream (a cut network per layer)."""
        with self._lock:
            stale = [e for s, e in self._engines.items() if s != settings]
            self._engines = {settings: engine}
        for e in stale:
            e.close()

    def start_dream(self, image: np.ndarray, settings: DreamSettings, label: str = "", request: int = 0):
        """Dream (H, W, 3) uint8 BGR ``image`` in a background task; returns its TaskHandle."""
        label = label or settings.terms[0].layer
        shot = Shot(request, np.ascontiguousarray(shrunk(image, self.config.max_side)), label)
        self.shot = shot
        return self.tasks.start(DREAM_TASK, lambda task: self._dream(task, shot, settings), label=f"dream {label}")

    def _dream(self, task: TaskContext, shot: Shot, settings: DreamSettings) -> Path | None:
        lower_priority()
        engine = self._take_engine(settings)
        last = [0.0]

        def progress(p) -> None:
            now = time.monotonic()
            if now - last[0] >= REPORT_EVERY_S:
                last[0] = now
                task.report(p.fraction)

        try:
            result = dream(shot.source, self.model, settings, progress=progress, cancel=task.cancelled,
                           engine=engine)
        except Exception as exc:
            shot.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self._give_engine(settings, engine)
        shot.image = result.image
        if result.cancelled:
            shot.cancelled = True
            return None
        shot.path = write_unique_image(self.snapshot_dir, "dream", ".png", result.image)
        return shot.path

    def start_live(self, settings: DreamSettings, label: str = "", mirror: bool = False) -> None:
        """Run the live-dream loop with these settings (restarts it when they change)."""
        handle = self.tasks.latest(LIVE_TASK)
        same = self._live_settings == (settings, mirror)
        if handle is not None and same and (handle.running or handle.status == "failed"):
            return  # running, or failed with these settings (shown in the status line; a change retries)
        self._live_settings = (settings, mirror)
        label = label or settings.terms[0].layer
        self.tasks.start(LIVE_TASK, lambda task: self._live_loop(task, settings, label, mirror),
                         label="live dream", cancellable=False)  # its own key stops it; Esc still quits

    def stop_live(self) -> None:
        if self._live_settings is not None:
            self.tasks.cancel(LIVE_TASK)
            self._live_settings = None
            self.live = None

    def _live_loop(self, task: TaskContext, settings: DreamSettings, label: str, mirror: bool) -> int:
        """Dream each newest frame with ``config.live_steps`` steps until cancelled; skips frames it
        is too slow for, so capture and display keep their pace."""
        lower_priority()
        dreamer = LiveDreamer(self.model, live_settings(settings, steps=self.config.live_steps),
                              max_side=self.config.live_max_side)
        stop = lambda: task.cancelled() or not self.alive()  # noqa: E731
        done = 0
        try:
            for captured, jumped in newest_frames(self.frames, stop):
                if jumped:
                    dreamer.reset()  # a seek, a step back or a loop: the flow would link unrelated frames
                index = captured.frame.index
                image = captured.frame.image
                out = dreamer.step(np.ascontiguousarray(image[:, ::-1]) if mirror else image, cancel=stop)
                if stop():
                    break
                self.live = LiveFrame(out, index, dreamer.fps, label)
                done += 1
                self.live_frames += 1
                task.report(0.0)  # bumps the tasks' version: the pane is redrawn with the new frame
        finally:
            dreamer.close()
        return done

    # pane provider and status (any thread; read only) ---------------------------------------------
    def pane(self, result: LiveResult, state: AppState) -> np.ndarray | None:
        """(h, w, 3) uint8 BGR for the mosaic pane: the dream view, else the live dream, else None."""
        if view_open(state):
            shot = self.shot
            if shot is None or shot.request != state.extras.get(REQUEST, 0):  # the stage has not run yet
                return self._captioned(None, "dreaming...")
            return self._shot_pane(shot)
        if state.mode == LIVE_MODE:
            live = self.live
            if live is None:
                return self._captioned(None, "live dream: starting..." + (f" {self.error}" if self.error else ""))
            return self._captioned(live.image, f"live dream {live.label} {live.fps:.1f} fps")
        return None

    def _shot_pane(self, shot: Shot) -> np.ndarray:
        handle = self.tasks.latest(DREAM_TASK)
        if shot.error:
            return self._captioned(shot.source, f"dream failed: {shot.error}")
        if shot.path is not None:
            return self._captioned(shot.image, f"dream {shot.label} - saved {shot.path.name}")
        if shot.cancelled:
            return self._captioned(shot.image, f"dream {shot.label} cancelled (partial, not saved)")
        progress = handle.progress if handle is not None else 0.0
        dimmed = (shot.source.astype(np.uint16) // 2).astype(np.uint8)
        return self._captioned(dimmed, f"dreaming {shot.label} {progress * 100:.0f}% (Esc cancels)")

    def _captioned(self, image: np.ndarray | None, caption: str) -> np.ndarray:
        return captioned_pane(image, caption, self.mosaic_size)

    def status_flag(self, state: AppState) -> str | None:
        if self.error:
            return f"dream error: {self.error}"
        shot = self.shot
        if shot is not None and shot.error and view_open(state):
            return f"dream failed: {shot.error}"
        if state.mode == LIVE_MODE:
            handle, live = self.tasks.latest(LIVE_TASK), self.live
            if handle is not None and handle.status == "failed":
                return f"failed: {handle.error}"
            return f"{live.fps:.1f} fps" if live is not None else "starting"
        return None

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()


def install_dream(app) -> LiveDream:
    """Plugin for ``LiveOptions.plugins``: the dream keys' tasks, the dream in the mosaic pane."""
    # The configured preset is part of the start state (and of what reset returns to).
    app.initial = _with_extras(app.initial, **{PRESET: app.config.dream.preset})
    app.state = _with_extras(app.state, **{PRESET: app.config.dream.preset})
    app.context = dataclasses.replace(app.context, initial=app.initial)
    panes = app.view.panes
    mosaic = panes.get("mosaic") or next(iter(panes.values()))
    dreams = LiveDream(app.model, app.layers, app.tasks, app.config.dream, app.frames,
                       app.options.snapshot_dir or app.config.live.snapshot_dir, (mosaic.h, mosaic.w),
                       alive=app.compute_thread.is_alive)  # it starts the loop; shutdown joins it first
    app.dream = dreams
    if app.model.module is None:
        dreams.error = "dreaming needs a PyTorch model, not an ONNX graph"
        app.view.status_flags.append(lambda state: dreams.error if state.mode == LIVE_MODE or view_open(state)
                                     else None)
        return dreams
    app.compute.add_stage("dream", dreams.stage, depends_on=("layer", "mode", REQUEST, PRESET, LAYER))
    previous = app.view.pane_providers.get("mosaic")  # e.g. the unit plugin's filter view

    def mosaic_pane(result: LiveResult, state: AppState) -> np.ndarray | None:
        pane = dreams.pane(result, state)
        if pane is None and previous is not None:
            return previous(result, state)
        return pane

    app.view.pane_providers["mosaic"] = mosaic_pane
    app.view.status_flags.append(dreams.status_flag)
    return dreams
