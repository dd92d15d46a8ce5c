"""What the user has chosen in the live window, and how each key action changes it.

``AppState`` is immutable; ``reduce(state, action, context)`` is a pure function returning the
next state plus the side effects the loop must carry out (seek the video, write a snapshot, quit).
Nothing here touches a window, a thread or a model, so every key can be tested without a display.

Extensions (saliency, dream, unit pictures) add actions with ``register_action`` before the key
table is loaded, and keep their choices in ``mode`` / ``overlay`` / ``extras``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping

from toolbox.render.mosaic import MosaicGeometry, mosaic_geometry

ZOOM_MODES = ("channel", "overlay", "input")  # selected channel; channel over the input; the input


@dataclass(frozen=True)
class AppState:
    """The user's choices. ``layer`` indexes ``LiveContext.layers``."""

    layer: int
    channel: int = 0
    zoom: str = "channel"
    normalisation: str = "channel"  # "channel" | "layer"
    colormap_on: bool = False
    frozen: bool = False  # input held: no new frames reach compute or display
    paused: bool = False  # video playback paused (seekable sources only)
    mirror: bool = False
    help: bool = False
    recording: bool = False
    mode: str = "live"  # extension point: "live", "dream", ... (what the compute thread produces)
    overlay: str = "none"  # extension point: saliency method name drawn over the panes
    extras: Mapping[str, object] = field(default_factory=dict)  # extension-owned choices (immutable use)


def with_extras(state: AppState, **changes) -> AppState:
    """``state`` with ``changes`` merged into its extras (a new mapping: the old one is never mutated)."""
    return dataclasses.replace(state, extras={**state.extras, **changes})


def with_request(state: AppState, key: str, **changes) -> AppState:
    """``state`` with the request counter extras[key] (an int, 0 when absent) one higher, plus ``changes``:
    a key that asks for work bumps it, and the compute stage that depends on ``key`` acts on it once."""
    return with_extras(state, **{key: int(state.extras.get(key, 0)) + 1}, **changes)


@dataclass(frozen=True)
class Effect:
    """A side effect of a key the loop performs: kind in EFFECTS, with an optional amount or text."""

    kind: str
    amount: float = 0.0
    text: str = ""


EFFECTS = ("seek_seconds", "step_frames", "restart", "snapshot", "quit", "cancel_tasks", "message")


@dataclass(frozen=True)
class LayerShape:
    name: str
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class LiveContext:
    """What the reducers need to know about the world, besides the state.

    layers: the model's visualisable layers with their (C, H, W).
    mosaic_size: (height, width) of the mosaic pane; it fixes the grid the arrows move on.
    channel_means: current mean activation of each channel of the selected layer (None before
    the first result). busy: a cancellable background task is running.
    """

    layers: tuple[LayerShape, ...]
    mosaic_size: tuple[int, int]
    seekable: bool = False
    fast_step: int = 3
    seek_seconds: float = 5.0
    channel_means: tuple[float, ...] | None = None
    busy: bool = False
    initial: AppState | None = None  # what reset returns to

    def geometry(self, layer: int) -> MosaicGeometry:
        shape = self.layers[layer]
        return mosaic_geometry(shape.channels, shape.height, shape.width, *self.mosaic_size)


@dataclass(frozen=True)
class Transition:
    state: AppState
    effects: tuple[Effect, ...] = ()


Reducer = Callable[[AppState, LiveContext], "Transition | AppState"]
ACTIONS: dict[str, Reducer] = {}


def register_action(name: str, reducer: Reducer | None = None):
    """Add an action the key table may bind. Usable as a decorator. Names are unique."""

    def add(fn: Reducer) -> Reducer:
        if name in ACTIONS and ACTIONS[name] is not fn:
            raise ValueError(f"action '{name}' is already registered")
        ACTIONS[name] = fn
        return fn

    return add(reducer) if reducer is not None else add


def reduce(state: AppState, action: str, context: LiveContext) -> Transition:
    """The state after ``action``, plus its side effects. Unknown actions raise KeyError."""
    out = ACTIONS[action](state, context)
    return out if isinstance(out, Transition) else Transition(out)


def _replace(state: AppState, **changes) -> AppState:
    return dataclasses.replace(state, **changes)


def _message(state: AppState, text: str) -> Transition:
    """No change; a transient line for the status bar."""
    return Transition(state, (Effect("message", text=text),))


# --- layer and channel -----------------------------------------------------------------------

def _with_layer(state: AppState, context: LiveContext, layer: int) -> AppState:
    layer = min(max(layer, 0), len(context.layers) - 1)
    channel = min(state.channel, context.layers[layer].channels - 1)
    return _replace(state, layer=layer, channel=channel)


register_action("prev_layer", lambda s, c: _with_layer(s, c, s.layer - 1))
register_action("next_layer", lambda s, c: _with_layer(s, c, s.layer + 1))


def _mover(d_row: int, d_col: int, fast: bool) -> Reducer:
    def move(state: AppState, context: LiveContext) -> AppState:
        step = context.fast_step if fast else 1
        channel = context.geometry(state.layer).move(state.channel, d_row * step, d_col * step)
        return _replace(state, channel=channel)

    return move


for _name, (_dr, _dc) in {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}.items():
    register_action(f"channel_{_name}", _mover(_dr, _dc, False))
    register_action(f"channel_{_name}_fast", _mover(_dr, _dc, True))


@register_action("most_active")
def _most_active(state: AppState, context: LiveContext) -> AppState | Transition:
    means = context.channel_means
    if not means:
        return _message(state, "no activations yet")
    return _replace(state, channel=max(range(len(means)), key=means.__getitem__))


# --- display -----------------------------------------------------------------------------------

@register_action("zoom_cycle")
def _zoom_cycle(state: AppState, context: LiveContext) -> AppState:
    return _replace(state, zoom=ZOOM_MODES[(ZOOM_MODES.index(state.zoom) + 1) % len(ZOOM_MODES)])


register_action("normalisation", lambda s, c: _replace(
    s, normalisation="layer" if s.normalisation == "channel" else "channel"))
register_action("colormap", lambda s, c: _replace(s, colormap_on=not s.colormap_on))
register_action("mirror", lambda s, c: _replace(s, mirror=not s.mirror))
register_action("help", lambda s, c: _replace(s, help=not s.help))
register_action("freeze", lambda s, c: _replace(s, frozen=not s.frozen))
register_action("record", lambda s, c: _replace(s, recording=not s.recording))


@register_action("reset")
def _reset(state: AppState, context: LiveContext) -> AppState:
    """Back to the start-up choices; input, playback and recording are left as they are."""
    base = context.initial or AppState(layer=state.layer)
    return _replace(base, frozen=state.frozen, paused=state.paused, recording=state.recording)


# --- video transport ----------------------------------------------------------------------------

def _video_only(fn: Reducer) -> Reducer:
    def guarded(state: AppState, context: LiveContext):
        if not context.seekable:
            return _message(state, "not a video: pause, step and seek work on files")
        return fn(state, context)

    return guarded


register_action("pause", _video_only(lambda s, c: _replace(s, paused=not s.paused)))
register_action("step_back", _video_only(
    lambda s, c: Transition(_replace(s, paused=True, frozen=False), (Effect("step_frames", -1),))))
register_action("step_forward", _video_only(
    lambda s, c: Transition(_replace(s, paused=True, frozen=False), (Effect("step_frames", 1),))))
register_action("seek_back", _video_only(
    lambda s, c: Transition(s, (Effect("seek_seconds", -c.seek_seconds),))))
register_action("seek_forward", _video_only(
    lambda s, c: Transition(s, (Effect("seek_seconds", c.seek_seconds),))))
register_action("restart", _video_only(lambda s, c: Transition(s, (Effect("restart"),))))

# --- files and lifetime ---------------------------------------------------------------------------

register_action("snapshot", lambda s, c: Transition(s, (Effect("snapshot"),)))
register_action("quit", lambda s, c: Transition(s, (Effect("quit"),)))
register_action("cancel_or_quit", lambda s, c: Transition(
    s, (Effect("cancel_tasks") if c.busy else Effect("quit"),)))
