"""Per-unit pictures in the live window: the side column and the filter view.

The side column shows, for the selected unit (layer, channel), its synthetic image (activation
maximisation, read from the unit cache, else optimised in a background task) above the 9 patches of
the user's own footage that excited it most. Keys (configs/keys.yaml):

    units_filters     the mosaic shows the layer's filters instead of its activations
    units_reset_top   forget the top-9 patches seen so far
    units_precompute  optimise the whole layer's images in the background (Esc cancels)

Threads: ``stage`` runs in the compute thread after each forward (it owns the top-9 trackers and
starts the tasks); the pane providers run wherever the window is rendered and only read (a locked
tracker, an in-memory dict of images). Reducers stay pure: a key that asks for work bumps a counter
in ``AppState.extras`` that the stage depends on, so the stage runs (on the same frame if frozen)
and acts on it once.
"""
from __future__ import annotations

import threading

import numpy as np

from toolbox.analysis.top_patches import TopPatches
from toolbox.analysis.unit_cache import DEFAULT_BATCH, UnitCache, compute_unit_images
from toolbox.analysis.unitvis import UnitVisSettings, preset
from toolbox.app.compute import LiveResult
from toolbox.app.state import (AppState, Effect, LayerShape, LiveContext, Transition, register_action, with_extras,
                               with_request)
from toolbox.app.tasks import TaskContext, TaskRunner, throttled
from toolbox.config import UnitsConfig
from toolbox.models.receptive_field import receptive_field
from toolbox.models.registry import LoadedModel
from toolbox.render.filters import filters_pane, layer_conv_weight
from toolbox.render.unit_column import unit_column

FILTERS = "units_filters"  # extras: bool, the mosaic shows filters
RESET = "units_reset"  # extras: int, bumped by each reset request
PRECOMPUTE = "units_precompute"  # extras: int, bumped by each whole-layer request
UNIT_TASK, LAYER_TASK = "units", "units_layer"  # task names
REPORT_EVERY_S = 0.2  # optimisation steps report progress at most this often (each report redraws the window)
TRACKED_LAYERS = 4  # top-9 kept for the most recently shown layers (deep layers keep whole frames)


# --- key actions (pure) ---------------------------------------------------------------------------

@register_action("units_filters")
def toggle_filters(state: AppState, context: LiveContext) -> AppState:
    return with_extras(state, **{FILTERS: not state.extras.get(FILTERS, False)})


@register_action("units_reset_top")
def reset_top(state: AppState, context: LiveContext) -> Transition:
    return Transition(with_request(state, RESET), (Effect("message", text="top-9 patches reset"),))


@register_action("units_precompute")
def precompute_layer(state: AppState, context: LiveContext) -> Transition:
    name = context.layers[state.layer].name
    return Transition(with_request(state, PRECOMPUTE),
                      (Effect("message", text=f"unit images of {name}: computing in the background (Esc cancels)"),))


# --- the plugin -------------------------------------------------------------------------------------

def live_unit_settings(config: UnitsConfig) -> UnitVisSettings:
    """The unit-vis settings of the live window: the configured preset at the configured size and steps."""
    return preset(config.preset, size=config.size, steps=config.steps)


class LiveUnits:
    """Top-9 trackers per layer, unit images in memory, and the background tasks that make them.

    layers: the app's layers; side_size / mosaic_size: (h, w) of the panes (None: no such pane).
    """

    def __init__(self, model: LoadedModel, layers: tuple[LayerShape, ...], tasks: TaskRunner,
                 settings: UnitVisSettings, side_size: tuple[int, int] | None,
                 mosaic_size: tuple[int, int] | None, cache: UnitCache | None = None):
        self.model, self.layers, self.tasks, self.settings = model, layers, tasks, settings
        self.side_size, self.mosaic_size = side_size, mosaic_size
        self.cache = cache or UnitCache()
        self._lock = threading.Lock()
        self._trackers: dict[str, TopPatches] = {}
        self._offered: dict[str, object] = {}  # layer -> the Captured last offered (a frame counts once)
        self._images: dict[tuple[str, int], np.ndarray] = {}  # (layer, channel) -> (S, S, 3) uint8 BGR
        self._looked_up: set[tuple[str, int]] = set()  # disk already checked
        self._requested: tuple[str, int] | None = None  # the unit last asked for (no re-request after Esc)
        self._jobs: dict[str, tuple[str, frozenset[int]]] = {}  # task name -> (layer, channels) it makes
        self.error = ""  # the last failure of the stage (shown in the side pane's title)
        self._seen = {RESET: 0, PRECOMPUTE: 0}
        self._filters: tuple[tuple, np.ndarray] | None = None

    # compute thread --------------------------------------------------------------------------------
    def stage(self, result: LiveResult, state: AppState) -> None:
        """After each forward: act on new requests, offer the frame to the layer's top-9, make sure
        the selected unit's image is cached or being computed."""
        try:
            self._stage(result, state)
            self.error = ""
        except Exception as exc:  # noqa: BLE001 - the frame's result must still be shown
            self.error = f"{type(exc).__name__}: {exc}"
        return None

    def _stage(self, result: LiveResult, state: AppState) -> None:
        layer = self.layers[state.layer].name
        if self._new_request(state, RESET):
            for tracker in list(self._trackers.values()):
                tracker.reset()
            self._offered.clear()
        tracker = self._tracker(layer)
        if self._offered.get(layer) is not result.captured:
            tracker.update(result.view, result.activations[layer], result.frame_index)
            self._offered[layer] = result.captured
        if self._new_request(state, PRECOMPUTE):
            self.start_layer(layer, state.channel)
        self.request(layer, state.channel)

    def _new_request(self, state: AppState, key: str) -> bool:
        """A key's counter changed to a non-zero value since last seen (the reset action sets it to 0)."""
        value = int(state.extras.get(key, 0))
        changed, self._seen[key] = value != self._seen[key], value
        return changed and value != 0

    def _tracker(self, layer: str) -> TopPatches:
        tracker = self._trackers.pop(layer, None)
        if tracker is None:
            shape = next(s for s in self.layers if s.name == layer)
            tracker = TopPatches(receptive_field(self.model, layer), shape.channels)
        self._trackers[layer] = tracker  # most recent last
        for old in list(self._trackers)[:-TRACKED_LAYERS]:
            del self._trackers[old]
            self._offered.pop(old, None)
        return tracker

    def tracker(self, layer: str) -> TopPatches | None:
        return self._trackers.get(layer)

    # tasks ------------------------------------------------------------------------------------------
    def request(self, layer: str, channel: int) -> None:
        """The unit's image: from memory, else the disk, else a background task (once per selection)."""
        key = (layer, channel)
        if key in self._images or key == self._requested:
            return
        if key not in self._looked_up:
            self._looked_up.add(key)
            image = self.cache.get(self.model, layer, channel, self.settings)
            if image is not None:
                self._images[key] = image
                return
        self._requested = key
        if self.pending(layer, channel):
            return  # the whole layer is on its way; two optimisations would halve each other's speed
        self._start(UNIT_TASK, layer, [channel], f"unit image {layer} ch {channel}")

    def start_layer(self, layer: str, first: int) -> None:
        """Every missing image of ``layer`` in the background, the selected channel's batch first."""
        channels = next(s.channels for s in self.layers if s.name == layer)
        order = [c for c in [*range(first, channels), *range(first)] if (layer, c) not in self._images]
        self.tasks.cancel(UNIT_TASK)  # the layer task starts with that unit anyway
        self._start(LAYER_TASK, layer, order, f"unit images {layer}")

    def _start(self, name: str, layer: str, channels: list[int], label: str) -> None:
        self._jobs[name] = (layer, frozenset(channels))
        self.tasks.start(name, lambda task: self._compute(task, layer, channels), label=label)

    def _compute(self, task: TaskContext, layer: str, channels: list[int]) -> int:
        """Task body: images of ``channels`` in batches, each batch cached and shown as it finishes."""
        # The shared model: the frame capture is gated to the compute thread, and unit_images
        # ignores forwards from other threads, so the two never see each other's passes.
        model = self.model
        done, total = 0, max(1, len(channels))
        progress = throttled(task.report, REPORT_EVERY_S)

        def on_step(step: int, steps: int, size: int) -> None:
            progress((done + size * step / max(1, steps)) / total)

        # The selected unit alone first (it is on screen), then the rest in batches (cheaper per unit).
        chunks = [channels[:1]] + [channels[i : i + DEFAULT_BATCH] for i in range(1, len(channels), DEFAULT_BATCH)]
        for chunk in chunks:
            if task.cancelled() or not chunk:
                break
            images = compute_unit_images(model, layer, chunk, self.settings, cancel=task.cancelled,
                                         cache=self.cache, batch=DEFAULT_BATCH,
                                         on_step=lambda s, n, k=len(chunk): on_step(s, n, k))
            for c, image in images.items():
                self._images[(layer, c)] = image
            done += len(images)
            task.report(done / total)
        return done

    def pending(self, layer: str, channel: int) -> bool:
        """A running task is making this unit's image."""
        return any(h.running for h in self._handles(layer, channel))

    def failure(self, layer: str, channel: int) -> str:
        """Why the last task for this unit failed, or ''."""
        return next((h.error for h in self._handles(layer, channel) if h.status == "failed"), "")

    def _handles(self, layer: str, channel: int) -> list:
        handles = []
        for name, (job_layer, channels) in list(self._jobs.items()):
            handle = self.tasks.latest(name)
            if handle is not None and job_layer == layer and channel in channels:
                handles.append(handle)
        return handles

    # pane providers (any thread; read only) -------------------------------------------------------
    def side_pane(self, result: LiveResult, state: AppState) -> np.ndarray | None:
        """(h, w, 3) uint8 BGR: the unit column of the selected unit."""
        if self.side_size is None:
            return None
        layer, channel = self.layers[state.layer].name, state.channel
        tracker = self._trackers.get(layer)
        patches = [p.image for p in tracker.patches(channel)] if tracker is not None else []
        image = self._images.get((layer, channel))
        error = self.error or (self.failure(layer, channel) if image is None else "")
        title = f"{layer} ch {channel}" + (f" - {error}" if error else "")
        return unit_column(image, patches, *self.side_size, title=title,
                           pending=image is None and self.pending(layer, channel))

    def mosaic_pane(self, result: LiveResult, state: AppState) -> np.ndarray | None:
        """In filter mode, (h, w, 3) uint8 BGR: the layer's RGB filters (first layer) or the selected
        filter's input-channel kernels (deeper layers); else None (the activation mosaic)."""
        if not state.extras.get(FILTERS) or self.mosaic_size is None or self.model.module is None:
            return None
        layer = self.layers[state.layer].name
        key = (layer, state.channel)
        cached = self._filters
        if cached is not None and cached[0] == key:
            return cached[1]
        pane = filters_pane(layer_conv_weight(self.model.module, layer), state.channel, layer, *self.mosaic_size)
        self._filters = (key, pane)
        return pane

    @staticmethod
    def status_flag(state: AppState) -> str | None:
        return "filters" if state.extras.get(FILTERS) else None


def install_units(app) -> LiveUnits:
    """Plugin for ``LiveOptions.plugins``: the unit column in the side pane and the filter view."""
    units = LiveUnits(app.model, app.layers, app.tasks, live_unit_settings(app.config.units),
                      app.view.pane_size("side"), app.view.pane_size("mosaic"))
    app.units = units
    if app.model.module is None:
        return units  # an ONNX graph: nothing to optimise through or to draw filters of
    app.compute.add_stage("units", units.stage, depends_on=("layer", "channel", RESET, PRECOMPUTE))
    app.view.pane_providers["side"] = units.side_pane
    app.view.pane_providers["mosaic"] = units.mosaic_pane
    app.view.status_flags.append(units.status_flag)
    return units
