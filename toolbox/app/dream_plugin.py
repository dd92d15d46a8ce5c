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

Threads as in toolbox.app.frame_tasks: the one-shot dream and the live-dream loop run in their own
threads on the shared model (the frame capture records only the compute thread's passes), each
with its own ``DreamEngine`` (engines are not thread-safe).
"""
from __future__ import annotations

import dataclasses
import functools
import threading

import numpy as np

from toolbox.analysis.dream import PRESETS, DreamEngine, DreamSettings, LiveDreamer, dream, live_settings, preset
from toolbox.app.frame_tasks import (Captions, FrameTasks, Shot, install_frame_tasks, mosaic_size, shrunk,
                                     toggle_shot_view, view_is_open)
from toolbox.app.state import AppState, Effect, LiveContext, Transition, register_action, with_extras
from toolbox.app.tasks import TaskContext
from toolbox.config import DreamConfig

LIVE_MODE = "dream"  # AppState.mode while live-dreaming
REQUEST = "dream_request"  # extras: int, bumped by each dream_frame that starts a dream
VIEW = "dream_view"  # extras: (layer, channel) where the dream view was opened, or None
PRESET = "dream_preset"  # extras: preset name (absent: the configured one)
LAYER = "dream_layer"  # extras: pinned layer index (absent or None: follow the selection)
DREAM_TASK, LIVE_TASK = "dream", "live_dream"

# --- key actions (pure) ---------------------------------------------------------------------------

def view_open(state: AppState) -> bool:
    """The dream view is shown: opened by the dream key at this very layer and channel."""
    return view_is_open(state, VIEW)


def dream_layer_index(state: AppState) -> int:
    pinned = state.extras.get(LAYER)
    return state.layer if pinned is None else int(pinned)


def preset_name(state: AppState) -> str:
    """The chosen preset; install_dream puts the configured one into the start state."""
    return str(state.extras.get(PRESET) or next(iter(PRESETS)))


@register_action("dream_frame")
def dream_frame(state: AppState, context: LiveContext) -> Transition | AppState:
    layer = context.layers[dream_layer_index(state)].name
    return toggle_shot_view(state, REQUEST, VIEW, f"dreaming on {layer} (Esc cancels)")


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
    return Transition(with_extras(state, **{PRESET: following}),
                      (Effect("message", text=f"dream preset {following}"),))


@register_action("dream_layer")
def dream_layer(state: AppState, context: LiveContext) -> Transition:
    if state.extras.get(LAYER) is not None:
        return Transition(with_extras(state, **{LAYER: None}),
                          (Effect("message", text="dream layer follows the selected layer"),))
    name = context.layers[state.layer].name
    return Transition(with_extras(state, **{LAYER: state.layer}),
                      (Effect("message", text=f"dream layer pinned to {name}"),))


# --- settings ---------------------------------------------------------------------------------------

def dream_settings(config: DreamConfig, preset_choice: str, layer: str) -> DreamSettings:
    """The preset on ``layer``, with the configured steps/octaves when set."""
    changes = {k: v for k, v in (("steps", config.steps), ("octaves", config.octaves)) if v is not None}
    return preset(preset_choice).with_layers([layer]).replace(**changes)


class LiveDream(FrameTasks):
    """The dream tasks of one live window and what they produced (see FrameTasks)."""

    captions = Captions(plugin="dream", shot="dream", making="dreaming", made="dream {label}", live="live dream")
    mode, request_key, view_key, shot_task, live_task = LIVE_MODE, REQUEST, VIEW, DREAM_TASK, LIVE_TASK

    def __init__(self, *args, **kwargs):  # as FrameTasks'
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._engines: dict[DreamSettings, DreamEngine] = {}  # idle engines; a running task holds its own

    # compute thread ---------------------------------------------------------------------------------
    def settings_for(self, state: AppState) -> tuple[DreamSettings, str]:
        """(the dream settings the state asks for, a label naming its layer and preset)."""
        layer, name = self.layers[dream_layer_index(state)].name, preset_name(state)
        return dream_settings(self.config, name, layer), f"{layer} {name}"

    def start_shot(self, image: np.ndarray, state: AppState, request: int):
        return self.start_dream(image, *self.settings_for(state), request)

    def follow_mode(self, state: AppState) -> None:
        if state.mode == LIVE_MODE:
            self.start_live(*self.settings_for(state), state.mirror)
        else:
            self.stop_live()

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
        return self.tasks.start(DREAM_TASK, lambda task: self.run_shot(task, shot, "dream", functools.partial(
            self._dream, shot, settings)), label=f"dream {label}")

    def _dream(self, shot: Shot, settings: DreamSettings, progress, cancelled) -> tuple[np.ndarray, bool]:
        engine = self._take_engine(settings)
        try:
            result = dream(shot.source, self.model, settings, progress=lambda p: progress(p.fraction),
                           cancel=cancelled, engine=engine)
        finally:
            self._give_engine(settings, engine)
        return result.image, result.cancelled

    def start_live(self, settings: DreamSettings, label: str = "", mirror: bool = False) -> None:
        """Run the live-dream loop with these settings (restarts it when they change)."""
        label = label or settings.terms[0].layer
        self.keep_live((settings, mirror), lambda task: self._live_loop(task, settings, label, mirror), "live dream")

    def _live_loop(self, task: TaskContext, settings: DreamSettings, label: str, mirror: bool) -> int:
        """Dream each newest frame with ``config.live_steps`` steps until cancelled."""
        dreamer = LiveDreamer(self.model, live_settings(settings, steps=self.config.live_steps),
                              max_side=self.config.live_max_side)
        try:
            return self.run_live(task, dreamer, mirror, lambda: label)
        finally:
            dreamer.close()

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()


def install_dream(app) -> LiveDream:
    """Plugin for ``LiveOptions.plugins``: the dream keys' tasks, the dream in the mosaic pane."""
    app.start_with_extras(**{PRESET: app.config.dream.preset})  # reset returns to the configured preset
    dreams = LiveDream(app.model, app.layers, app.tasks, app.config.dream, app.frames,
                       app.options.snapshot_dir or app.config.live.snapshot_dir, mosaic_size(app),
                       alive=app.compute_thread.is_alive)  # it starts the loop; shutdown joins it first
    app.dream = dreams
    install_frame_tasks(app, dreams, ("layer", "mode", REQUEST, PRESET, LAYER),
                        "dreaming needs a PyTorch model, not an ONNX graph")
    return dreams
