"""The map pane (key M): a 2-D map (PCA) of the index, or of the frames seen this session, drawn as an
atlas of thumbnails in the zoom pane, with the current frame placed by the fitted map's transform and
a short trail of where the last frames were.

The map is fitted in the background (a task with progress); without an index it is fitted again when
the session's memory has grown by half since the last fit.
"""
from __future__ import annotations

import collections
import dataclasses
import threading

import numpy as np

from toolbox.analysis.latent.maps import fit_map
from toolbox.app.latent_source import latent_source
from toolbox.app.state import AppState, LiveContext, register_action
from toolbox.render.atlas import atlas_plot, categorical_colours, mark_points
from toolbox.render.panes import blank_pane
from toolbox.render.text import fit_text, put_text

SHOWN = "latent_map"  # extras: bool, the pane is on
METHOD = "pca"  # exact transform in microseconds: the live point moves at frame rate
TRAIL = 24  # frames in the trail
MIN_POINTS = 8
REFIT_GROWTH = 1.5
TITLE_H = 18


@register_action("latent_map")
def toggle_map(state: AppState, context: LiveContext) -> AppState:
    return dataclasses.replace(state, extras={**state.extras, SHOWN: not state.extras.get(SHOWN, False)})


class LiveMap:
    def __init__(self, source, tasks, size: tuple[int, int]):
        self.source, self.tasks, self.size = source, tasks, size
        self._lock = threading.Lock()
        self._fitted = None  # (FeatureMap, atlas image, AtlasFrame, point count)
        self._trail: collections.deque = collections.deque(maxlen=TRAIL)

    def _fit(self, task) -> int:
        vectors, thumbs, classes = self.source.map_data()
        task.report(0.2, "fitting the map")
        fitted = fit_map(vectors, METHOD)
        task.report(0.7, "drawing the atlas")
        colours, _ = categorical_colours(classes)
        side = min(self.size[0] - TITLE_H, self.size[1])
        plot, frame = atlas_plot(fitted.coords, thumbs, colours, side=side, grid=max(4, side // 32))
        with self._lock:
            self._fitted = (fitted, plot, frame, len(vectors))
            self._trail.clear()
        return len(vectors)

    def _maybe_fit(self) -> None:
        count = len(self.source.index) if self.source.index is not None else len(self.source.memory)
        handle = self.tasks.latest("latent_map")
        if count < MIN_POINTS or (handle is not None and handle.running):
            return
        fitted = self._fitted
        if fitted is None or (self.source.index is None and count >= REFIT_GROWTH * fitted[3] and count > fitted[3] + 16):
            self.tasks.start("latent_map", self._fit, label="latent map")

    def stage(self, result, state):
        """Compute thread: place the frame on the map (and start a fit when one is due)."""
        if not state.extras.get(SHOWN):
            return None
        self._maybe_fit()
        with self._lock:
            fitted = self._fitted
            if fitted is None:
                return None
            point = fitted[2].to_pixels(fitted[0].transform(result.extras["latent"][None]))[0]
            self._trail.append(point)
            return np.array(self._trail)

    def pane(self, result, state) -> np.ndarray | None:
        h, w = self.size
        pane = blank_pane(h, w)
        fitted, trail = self._fitted, result.extras.get("map")
        if fitted is None:
            count = len(self.source.index) if self.source.index is not None else len(self.source.memory)
            put_text(pane, fit_text(f"map: {count} frames so far, fitting from {MIN_POINTS}", w - 8, 0.42), (4, 40),
                     0.42)
            return pane
        plot = fitted[1].copy()
        if trail is not None and len(trail):
            mark_points(plot, trail)
        x = (w - plot.shape[1]) // 2
        pane[TITLE_H : TITLE_H + plot.shape[0], x : x + plot.shape[1]] = plot
        title = f"{METHOD.upper()} map of {fitted[3]} frames at {self.source.layer}; ring: now"
        put_text(pane, fit_text(title, w - 8, 0.4), (4, 13), 0.4)
        return pane


def install_map(app):
    """Plugin for ``LiveOptions.plugins``: stage "map" and the zoom pane while the map is on."""
    source = latent_source(app)
    rect = app.view.panes.get("zoom")
    if rect is None:
        return None
    live_map = LiveMap(source, app.tasks, (rect.h, rect.w))
    previous = app.view.pane_providers.get("zoom")

    def zoom(result, state):
        if not state.extras.get(SHOWN):
            return previous(result, state) if previous is not None else None
        return live_map.pane(result, state)

    app.compute.add_stage("map", live_map.stage, depends_on=(SHOWN,))
    app.view.pane_providers["zoom"] = zoom
    app.view.status_flags.append(lambda state: "map" if state.extras.get(SHOWN) else None)
    app.latent_map = live_map
    return live_map
