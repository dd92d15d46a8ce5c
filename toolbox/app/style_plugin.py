"""Inversion and style transfer in the live window.

Keys (configs/keys.yaml):

    invert_frame   invert the frame on screen at the selected layer in the background (progress in
                   the pane, Esc cancels): the reconstruction replaces the mosaic pane and is saved
                   beside the snapshots. The same key, or a layer/channel move, returns.
    style_live     stylise mode: each press takes the next image of the styles folder (config
                   style.styles_dir; the shipped ones by default), after the last one it is off
                   (``AppState.mode == "style"``). A few steps per incoming frame, each frame
                   starting from the previous stylised one warped along the optical flow
                   (``LiveStylist``); its rate is in the pane caption and the status line.

Threads as in dream_plugin: reducers only change ``AppState``; ``stage`` (compute thread) starts
the inversion task and starts/stops the stylise loop; both run in their own threads with their
own cut networks, at a lower priority; the pane provider only reads.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from toolbox.analysis.dream.core import bgr_to_rgb01, rgb01_to_bgr
from toolbox.analysis.inversion import InversionSettings, invert
from toolbox.analysis.style import LiveStylist, StyleSettings, Stylist
from toolbox.app.compute import LiveResult
from toolbox.app.dream_plugin import REPORT_EVERY_S, Shot, captioned_pane, lower_priority, newest_frames, shrunk
from toolbox.app.state import AppState, Effect, LiveContext, Transition, register_action
from toolbox.app.tasks import TaskContext, TaskRunner
from toolbox.app.threads import Captured, LatestSlot
from toolbox.atomic import write_unique_image
from toolbox.config import StyleConfig
from toolbox.models.registry import LoadedModel
from toolbox.sources.images import IMAGE_SUFFIXES, read_image

STYLE_MODE = "style"  # AppState.mode while stylising
REQUEST = "invert_request"  # extras: int, bumped by each invert_frame that starts an inversion
VIEW = "invert_view"  # extras: (layer, channel) where the inversion view was opened, or None
STYLE = "style_index"  # extras: index into the style images while stylising
STYLES = "style_names"  # extras: the style images' names (set at install)
INVERT_TASK, STYLE_TASK = "invert", "stylise"
SHIPPED_STYLES = Path(__file__).resolve().parents[1] / "styles"


def _with_extras(state: AppState, **changes) -> AppState:
    return dataclasses.replace(state, extras={**state.extras, **changes})


def view_open(state: AppState) -> bool:
    return state.extras.get(VIEW) == (state.layer, state.channel)


@register_action("invert_frame")
def invert_frame(state: AppState, context: LiveContext) -> Transition | AppState:
    if view_open(state):
        return _with_extras(state, **{VIEW: None})
    layer = context.layers[state.layer].name
    return Transition(_with_extras(state, **{REQUEST: int(state.extras.get(REQUEST, 0)) + 1,
                                             VIEW: (state.layer, state.channel)}),
                      (Effect("message", text=f"inverting {layer} (Esc cancels)"),))


@register_action("style_live")
def style_live(state: AppState, context: LiveContext) -> Transition:
    names = tuple(state.extras.get(STYLES, ()))
    if not names:
        return Transition(state, (Effect("message", text="no style images: put PNG/JPEG files in the folder of "
                                                         "config style.styles_dir"),))
    index = state.extras.get(STYLE) if state.mode == STYLE_MODE else None
    following = 0 if index is None else index + 1
    if following >= len(names):
        return Transition(_with_extras(dataclasses.replace(state, mode="live"), **{STYLE: None}),
                          (Effect("message", text="stylise off"),))
    return Transition(_with_extras(dataclasses.replace(state, mode=STYLE_MODE), **{STYLE: following}),
                      (Effect("message", text=f"stylise: {names[following]}"),))


def style_images(folder: str | Path) -> list[Path]:
    """The style images of ``folder`` ("" : the shipped ones), sorted by name."""
    folder = Path(folder) if folder else SHIPPED_STYLES
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class StyledFrame:
    image: np.ndarray  # (H, W, 3) uint8 BGR
    fps: float
    name: str


class LiveStyle:
    """The inversion task and the stylise loop of one live window, and what they produced."""

    def __init__(self, model: LoadedModel, layers, tasks: TaskRunner, config: StyleConfig,
                 frames: LatestSlot[Captured], snapshot_dir: str | Path, mosaic_size: tuple[int, int],
                 alive: Callable[[], bool] = lambda: True):
        self.model, self.layers, self.tasks, self.config = model, layers, tasks, config
        self.frames, self.snapshot_dir, self.mosaic_size = frames, Path(snapshot_dir), mosaic_size
        self.alive = alive
        self.styles = style_images(config.styles_dir)
        self.shot: Shot | None = None
        self.live: StyledFrame | None = None
        self.live_frames = 0
        self.error = ""
        self._seen_request = 0
        self._live_style: tuple | None = None  # (style index, mirror) of the running loop

    # compute thread ---------------------------------------------------------------------------------
    def stage(self, result: LiveResult, state: AppState) -> None:
        try:
            request = int(state.extras.get(REQUEST, 0))
            if request != self._seen_request:
                self._seen_request = request
                if request:
                    frame = result.captured.frame.image
                    self.start_invert(frame[:, ::-1] if state.mirror else frame, self.layers[state.layer].name, request)
            index = state.extras.get(STYLE)
            if state.mode == STYLE_MODE and index is not None:
                self.start_live(int(index), state.mirror)
            else:
                self.stop_live()
            self.error = ""
        except Exception as exc:  # noqa: BLE001 - the frame's result must still be shown
            self.error = f"{type(exc).__name__}: {exc}"

    # inversion ----------------------------------------------------------------------------------------
    def start_invert(self, image: np.ndarray, layer: str, request: int = 0):
        shot = Shot(request, np.ascontiguousarray(shrunk(image, self.config.invert_max_side)), layer)
        self.shot = shot
        return self.tasks.start(INVERT_TASK, lambda task: self._invert(task, shot), label=f"invert {layer}")

    def _invert(self, task: TaskContext, shot: Shot) -> Path | None:
        lower_priority()
        last = [0.0]
        layer = shot.label

        def progress(p) -> None:
            if p.size is not None and p.size != shot.source.shape[:2]:  # out of GPU memory: the caption says the size
                shot.label = f"{layer} at {p.size[1]}x{p.size[0]}"
            now = time.monotonic()
            if now - last[0] >= REPORT_EVERY_S:
                last[0] = now
                task.report(p.fraction)

        try:
            result = invert(bgr_to_rgb01(shot.source, self.model.device), self.model, layer,
                            InversionSettings(steps=self.config.invert_steps), progress, task.cancelled)
        except Exception as exc:
            shot.error = f"{type(exc).__name__}: {exc}"
            raise
        shot.image = rgb01_to_bgr(result.rgb)
        if result.cancelled:
            shot.cancelled = True
            return None
        shot.path = write_unique_image(self.snapshot_dir, "invert", ".png", shot.image)
        return shot.path

    # stylise loop ---------------------------------------------------------------------------------------
    def start_live(self, index: int, mirror: bool = False) -> None:
        handle = self.tasks.latest(STYLE_TASK)
        if handle is not None and self._live_style == (index, mirror) and (handle.running or handle.status == "failed"):
            return
        self._live_style = (index, mirror)
        path = self.styles[index % len(self.styles)]
        self.tasks.start(STYLE_TASK, lambda task: self._live_loop(task, path, mirror), label="stylise",
                         cancellable=False)  # its own key stops it; Esc still quits

    def stop_live(self) -> None:
        if self._live_style is not None:
            self.tasks.cancel(STYLE_TASK)
            self._live_style = None
            self.live = None

    def _live_loop(self, task: TaskContext, path: Path, mirror: bool) -> int:
        lower_priority()
        c = self.config
        stylist = Stylist(self.model, bgr_to_rgb01(read_image(path), self.model.device), StyleSettings(steps=c.steps))
        styler = LiveStylist(stylist, steps=c.live_steps, max_side=c.live_max_side)
        stop = lambda: task.cancelled() or not self.alive()  # noqa: E731
        done = 0
        try:
            for captured, jumped in newest_frames(self.frames, stop):
                if jumped:
                    styler.reset()
                image = captured.frame.image
                out = styler.step(np.ascontiguousarray(image[:, ::-1]) if mirror else image, cancel=stop)
                if stop():
                    break
                size = f" at {styler.max_side} px" if styler.fallbacks else ""  # out of GPU memory: smaller
                self.live = StyledFrame(out, styler.fps, path.stem + size)
                done += 1
                self.live_frames += 1
                task.report(0.0)
        finally:
            stylist.close()
        return done

    # pane provider and status (any thread; read only) ------------------------------------------------
    def pane(self, result: LiveResult, state: AppState) -> np.ndarray | None:
        if view_open(state):
            shot = self.shot
            if shot is None or shot.request != state.extras.get(REQUEST, 0):
                return captioned_pane(None, "inverting...", self.mosaic_size)
            return self._shot_pane(shot)
        if state.mode == STYLE_MODE:
            live = self.live
            if live is None:
                return captioned_pane(None, "stylise: starting..." + (f" {self.error}" if self.error else ""),
                                      self.mosaic_size)
            return captioned_pane(live.image, f"stylise {live.name} {live.fps:.1f} fps", self.mosaic_size)
        return None

    def _shot_pane(self, shot: Shot) -> np.ndarray:
        if shot.error:
            return captioned_pane(shot.source, f"inversion failed: {shot.error}", self.mosaic_size)
        if shot.path is not None:
            return captioned_pane(shot.image, f"inverted from {shot.label} - saved {shot.path.name}", self.mosaic_size)
        if shot.cancelled:
            return captioned_pane(shot.image, f"inversion {shot.label} cancelled (partial, not saved)", self.mosaic_size)
        handle = self.tasks.latest(INVERT_TASK)
        progress = handle.progress if handle is not None else 0.0
        dimmed = (shot.source.astype(np.uint16) // 2).astype(np.uint8)
        return captioned_pane(dimmed, f"inverting {shot.label} {progress * 100:.0f}% (Esc cancels)", self.mosaic_size)

    def status_flag(self, state: AppState) -> str | None:
        if self.error:
            return f"style error: {self.error}"
        if state.mode == STYLE_MODE:
            handle, live = self.tasks.latest(STYLE_TASK), self.live
            if handle is not None and handle.status == "failed":
                return f"failed: {handle.error}"
            return f"stylise {live.fps:.1f} fps" if live is not None else "stylise starting"
        return None


def install_style(app) -> LiveStyle:
    """Plugin for ``LiveOptions.plugins``: the I and Y keys' tasks, their pictures in the mosaic pane."""
    panes = app.view.panes
    mosaic = panes.get("mosaic") or next(iter(panes.values()))
    style = LiveStyle(app.model, app.layers, app.tasks, app.config.style, app.frames,
                      app.options.snapshot_dir or app.config.live.snapshot_dir, (mosaic.h, mosaic.w),
                      alive=app.compute_thread.is_alive)
    names = tuple(p.stem for p in style.styles)
    app.initial = _with_extras(app.initial, **{STYLES: names})
    app.state = _with_extras(app.state, **{STYLES: names})
    app.context = dataclasses.replace(app.context, initial=app.initial)
    app.style = style
    if app.model.module is None:
        style.error = "inversion and style need a PyTorch model, not an ONNX graph"
        app.view.status_flags.append(lambda state: style.error if state.mode == STYLE_MODE or view_open(state) else None)
        return style
    app.compute.add_stage("style", style.stage, depends_on=("layer", "mode", REQUEST, STYLE))
    previous = app.view.pane_providers.get("mosaic")

    def mosaic_pane(result: LiveResult, state: AppState) -> np.ndarray | None:
        pane = style.pane(result, state)
        if pane is None and previous is not None:
            return previous(result, state)
        return pane

    app.view.pane_providers["mosaic"] = mosaic_pane
    app.view.status_flags.append(style.status_flag)
    return style
