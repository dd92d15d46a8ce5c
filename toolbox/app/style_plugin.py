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

Threads as in toolbox.app.frame_tasks; the inversion and the stylise loop each use their own cut
network.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from toolbox.analysis.dream.core import bgr_to_rgb01, rgb01_to_bgr
from toolbox.analysis.inversion import InversionSettings, invert
from toolbox.analysis.style import LiveStylist, StyleSettings, Stylist
from toolbox.app.frame_tasks import (Captions, FrameTasks, Shot, install_frame_tasks, mosaic_size, shrunk,
                                     toggle_shot_view, view_is_open)
from toolbox.app.state import AppState, Effect, LiveContext, Transition, register_action, with_extras
from toolbox.app.tasks import TaskContext
from toolbox.sources.images import IMAGE_SUFFIXES, read_image

STYLE_MODE = "style"  # AppState.mode while stylising
REQUEST = "invert_request"  # extras: int, bumped by each invert_frame that starts an inversion
VIEW = "invert_view"  # extras: (layer, channel) where the inversion view was opened, or None
STYLE = "style_index"  # extras: index into the style images while stylising
STYLES = "style_names"  # extras: the style images' names (set at install)
INVERT_TASK, STYLE_TASK = "invert", "stylise"
SHIPPED_STYLES = Path(__file__).resolve().parents[1] / "styles"


def view_open(state: AppState) -> bool:
    return view_is_open(state, VIEW)


@register_action("invert_frame")
def invert_frame(state: AppState, context: LiveContext) -> Transition | AppState:
    return toggle_shot_view(state, REQUEST, VIEW, f"inverting {context.layers[state.layer].name} (Esc cancels)")


@register_action("style_live")
def style_live(state: AppState, context: LiveContext) -> Transition:
    names = tuple(state.extras.get(STYLES, ()))
    if not names:
        return Transition(state, (Effect("message", text="no style images: put PNG/JPEG files in the folder of "
                                                         "config style.styles_dir"),))
    index = state.extras.get(STYLE) if state.mode == STYLE_MODE else None
    following = 0 if index is None else index + 1
    if following >= len(names):
        return Transition(with_extras(dataclasses.replace(state, mode="live"), **{STYLE: None}),
                          (Effect("message", text="stylise off"),))
    return Transition(with_extras(dataclasses.replace(state, mode=STYLE_MODE), **{STYLE: following}),
                      (Effect("message", text=f"stylise: {names[following]}"),))


def style_images(folder: str | Path) -> list[Path]:
    """The style images of ``folder`` ("" : the shipped ones), sorted by name."""
    folder = Path(folder) if folder else SHIPPED_STYLES
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class LiveStyle(FrameTasks):
    """The inversion task and the stylise loop of one live window, and what they produced."""

    captions = Captions(plugin="style", shot="inversion", making="inverting", made="inverted from {label}",
                        live="stylise")
    mode, request_key, view_key, shot_task, live_task = STYLE_MODE, REQUEST, VIEW, INVERT_TASK, STYLE_TASK

    def __init__(self, *args, **kwargs):  # as FrameTasks'
        super().__init__(*args, **kwargs)
        self.styles = style_images(self.config.styles_dir)

    # compute thread ---------------------------------------------------------------------------------
    def start_shot(self, image: np.ndarray, state: AppState, request: int):
        return self.start_invert(image, self.layers[state.layer].name, request)

    def follow_mode(self, state: AppState) -> None:
        index = state.extras.get(STYLE)
        if state.mode == STYLE_MODE and index is not None:
            self.start_live(int(index), state.mirror)
        else:
            self.stop_live()

    # inversion ----------------------------------------------------------------------------------------
    def start_invert(self, image: np.ndarray, layer: str, request: int = 0):
        shot = Shot(request, np.ascontiguousarray(shrunk(image, self.config.invert_max_side)), layer)
        self.shot = shot
        return self.tasks.start(INVERT_TASK, lambda task: self.run_shot(task, shot, "invert", functools.partial(
            self._invert, shot)), label=f"invert {layer}")

    def _invert(self, shot: Shot, progress, cancelled) -> tuple[np.ndarray, bool]:
        layer = shot.label

        def report(p) -> None:
            if p.size is not None and p.size != shot.source.shape[:2]:  # out of GPU memory: the caption says the size
                shot.label = f"{layer} at {p.size[1]}x{p.size[0]}"
            progress(p.fraction)

        result = invert(bgr_to_rgb01(shot.source, self.model.device), self.model, layer,
                        InversionSettings(steps=self.config.invert_steps), report, cancelled)
        return rgb01_to_bgr(result.rgb), result.cancelled

    # stylise loop ---------------------------------------------------------------------------------------
    def start_live(self, index: int, mirror: bool = False) -> None:
        path = self.styles[index % len(self.styles)]
        self.keep_live((index, mirror), lambda task: self._live_loop(task, path, mirror), "stylise")

    def _live_loop(self, task: TaskContext, path: Path, mirror: bool) -> int:
        c = self.config
        stylist = Stylist(self.model, bgr_to_rgb01(read_image(path), self.model.device), StyleSettings(steps=c.steps))
        styler = LiveStylist(stylist, steps=c.live_steps, max_side=c.live_max_side)
        # out of GPU memory it continues smaller, and the caption says so
        label = lambda: path.stem + (f" at {styler.max_side} px" if styler.fallbacks else "")  # noqa: E731
        try:
            return self.run_live(task, styler, mirror, label)
        finally:
            stylist.close()


def install_style(app) -> LiveStyle:
    """Plugin for ``LiveOptions.plugins``: the I and Y keys' tasks, their pictures in the mosaic pane."""
    style = LiveStyle(app.model, app.layers, app.tasks, app.config.style, app.frames,
                      app.options.snapshot_dir or app.config.live.snapshot_dir, mosaic_size(app),
                      alive=app.compute_thread.is_alive)
    app.start_with_extras(**{STYLES: tuple(p.stem for p in style.styles)})
    app.style = style
    install_frame_tasks(app, style, ("layer", "mode", REQUEST, STYLE),
                        "inversion and style need a PyTorch model, not an ONNX graph")
    return style
