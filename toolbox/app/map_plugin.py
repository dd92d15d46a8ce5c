"""The map pane (key M): a 2-D map of the index, or of the frames seen this session, drawn as an
atlas of thumbnails in the zoom pane, with the current frame placed on it and a short trail of where
the last frames were. Key P cycles the map's method: PCA -> UMAP -> t-SNE.

Every map is fitted in the background (a task with progress; Esc cancels it); without an index it is
fitted again when the session's memory has grown by half since the last fit. PCA places the live
frame by its exact projection. UMAP's and openTSNE's own transforms take 10-400 ms per point, so on
their maps the frame is placed by its nearest fitted frames in feature space instead (the weighted
mean of their map positions, ``analysis.latent.placement``), and the caption says so. Until the first
non-linear fit is done, the PCA map is shown with the fit's progress in its caption.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time

import numpy as np

from toolbox.analysis.latent.maps import FeatureMap, fit_map
from toolbox.analysis.latent.placement import NeighbourPlacement
from toolbox.app.latent_source import latent_source
from toolbox.app.state import AppState, LiveContext, register_action, with_extras
from toolbox.app.tasks import lower_priority, throttled
from toolbox.render.atlas import AtlasFrame, atlas_plot, categorical_colours, legend_strip, mark_points
from toolbox.render.panes import blank_pane
from toolbox.render.text import fit_text, put_text

SHOWN = "latent_map"  # extras: bool, the pane is on
METHOD = "latent_map_method"  # extras: one of METHODS (absent: "pca")
METHODS = ("pca", "umap", "tsne")
NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}
PCA_TASK, NONLINEAR_TASK = "latent_map", "latent_map_nonlinear"
TRAIL = 24  # frames in the trail
MIN_POINTS = 8
REFIT_GROWTH = 1.5
# points a UMAP / t-SNE fit takes (a seeded sample of a larger set): below 4096, where umap-learn
# switches from exact neighbours to NNDescent, whose numba code holds the GIL for up to 0.4 s at a time
# (the live threads stall; measured by scripts/bench_latent.py --umap-points 4096 against 4000)
NONLINEAR_LIMIT = 4000
NEIGHBOURS = 8  # fitted frames that place the live frame on a non-linear map
SEED = 0
TITLE_H = 32  # two caption lines
LEGEND_H = 16  # one line of top-1 classes under the atlas


@register_action("latent_map")
def toggle_map(state: AppState, context: LiveContext) -> AppState:
    return with_extras(state, **{SHOWN: not state.extras.get(SHOWN, False)})


@register_action("latent_map_method")
def next_map_method(state: AppState, context: LiveContext) -> AppState:
    method = METHODS[(METHODS.index(state.extras.get(METHOD, "pca")) + 1) % len(METHODS)]
    return with_extras(state, **{METHOD: method})


@dataclasses.dataclass(frozen=True)
class LiveFit:
    """One fitted map, its atlas and the atlas' class legend strip: ``count`` points fitted of the
    ``total`` in the set then; ``placement`` None: the live frame is placed by the map's own (exact PCA)
    transform."""

    fitted: FeatureMap
    plot: np.ndarray
    legend: np.ndarray
    frame: AtlasFrame
    count: int
    total: int
    finished: float  # time.monotonic()
    placement: NeighbourPlacement | None

    def pixel(self, vector: np.ndarray) -> np.ndarray:
        """(D,) -> (2,) int atlas pixel (x, y) of the live frame."""
        coords = self.fitted.transform(vector[None]) if self.placement is None else self.placement.place(vector)
        return self.frame.to_pixels(coords)[0]


@dataclasses.dataclass(frozen=True)
class MapFrame:
    """What the map stage hands the pane: the fit drawn, the trail (M, 2) int pixels oldest first,
    and the two caption lines."""

    fit: LiveFit
    trail: np.ndarray
    caption: tuple[str, str]


class LiveMap:
    def __init__(self, source, tasks, size: tuple[int, int], epochs: int | None = None):
        self.source, self.tasks, self.size, self.epochs = source, tasks, size, epochs
        self._lock = threading.Lock()
        self.fits: dict[str, LiveFit] = {}
        self._requested: str | None = None  # the method of the latest non-linear fit task
        self._trail: collections.deque = collections.deque(maxlen=TRAIL)
        self._trail_fit: LiveFit | None = None

    def _count(self) -> int:
        return len(self.source.index) if self.source.index is not None else len(self.source.memory)

    def _fit(self, method: str):
        def run(task) -> int:
            lower_priority()
            vectors, thumbs, classes = self.source.map_data()
            total = len(vectors)
            if method != "pca" and total > NONLINEAR_LIMIT:
                keep = np.sort(np.random.default_rng(SEED).choice(total, NONLINEAR_LIMIT, replace=False))
                vectors, thumbs, classes = vectors[keep], thumbs[keep], [classes[i] for i in keep]
            task.report(0.02, f"fitting {NAMES[method]}")
            report = throttled(task.report)

            def progress(fraction: float) -> None:
                task.check()
                report(0.02 + 0.9 * fraction)

            fitted = fit_map(vectors, method, seed=SEED, progress=progress, epochs=self.epochs)
            task.report(0.93, "drawing the atlas")
            colours, entries = categorical_colours(classes)
            side = min(self.size[0] - TITLE_H - LEGEND_H, self.size[1])
            plot, frame = atlas_plot(fitted.coords, thumbs, colours, side=side, grid=max(4, side // 32))
            legend = legend_strip(entries, LEGEND_H, self.size[1])
            placement = None if method == "pca" else NeighbourPlacement(vectors, fitted.coords, NEIGHBOURS)
            task.check()
            with self._lock:
                self.fits[method] = LiveFit(fitted, plot, legend, frame, len(vectors), total, time.monotonic(),
                                           placement)
            return len(vectors)

        return run

    def _due(self, method: str, count: int) -> bool:
        fit = self.fits.get(method)
        return fit is None or (self.source.index is None and count >= REFIT_GROWTH * fit.total
                               and count > fit.total + 16)

    def _maybe_fit(self, method: str) -> None:
        count = self._count()
        if count < MIN_POINTS:
            return
        handle = self.tasks.latest(PCA_TASK)
        if not (handle is not None and handle.running) and self._due("pca", count):
            self.tasks.start(PCA_TASK, self._fit("pca"), label="latent map (PCA)")
        handle = self.tasks.latest(NONLINEAR_TASK)
        if self._requested != method:
            if handle is not None and handle.running:
                handle.cancel()  # the method was switched: that fit would only take the cores
            self._requested = None
        # a cancelled (Esc) or failed fit is not restarted on its own: cycling the method (through PCA)
        # asks again
        if method == "pca" or (self._requested == method and handle is not None and handle.status != "done"):
            return
        if self._due(method, count):
            self._requested = method
            self.tasks.start(NONLINEAR_TASK, self._fit(method), label=f"latent map ({NAMES[method]})")

    def _caption(self, method: str, fit: LiveFit) -> tuple[str, str]:
        shown = fit.fitted.method
        sample = f" of {fit.total}" if fit.count < fit.total else ""  # a seeded sample of a large index
        title = f"{NAMES[shown]} map of {fit.count}{sample} frames at {self.source.layer}"
        handle = self.tasks.latest(NONLINEAR_TASK) if method != "pca" else None
        fitting = ""
        if handle is not None and self._requested == method:
            fitting = {"running": f"fitting {NAMES[method]} {handle.progress * 100:.0f} %",
                       "cancelled": f"{NAMES[method]} fit cancelled (Esc)",
                       "failed": f"{NAMES[method]} fit failed: {handle.error}"}.get(handle.status, "")
        if shown == "pca":
            return title, fitting or "live point: exact PCA projection; ring: now"
        placed = f"live point: {fit.placement.k}-NN placement"
        if fitting.startswith("fitting"):
            return title, f"{placed}; re{fitting}"
        verb = "fitted" if self.source.index is not None else "refit"
        return title, f"{verb} {time.monotonic() - fit.finished:.0f} s ago, {placed}"

    def stage(self, result, state) -> MapFrame | None:
        """Compute thread: place the frame on the map (and start a fit when one is due)."""
        if not state.extras.get(SHOWN):
            return None
        method = state.extras.get(METHOD, "pca")
        self._maybe_fit(method)
        with self._lock:
            fit = self.fits.get(method) or self.fits.get("pca")
            if fit is None:
                return None
            if fit is not self._trail_fit:  # another map: the old trail's pixels mean nothing on it
                self._trail.clear()
                self._trail_fit = fit
            self._trail.append(fit.pixel(result.extras["latent"]))
            trail = np.array(self._trail)
        return MapFrame(fit, trail, self._caption(method, fit))

    def pane(self, result, state) -> np.ndarray | None:
        h, w = self.size
        pane = blank_pane(h, w)
        shown = result.extras.get("map")
        if shown is None:
            put_text(pane, fit_text(f"map: {self._count()} frames so far, fitting from {MIN_POINTS}", w - 8, 0.42),
                     (4, 40), 0.42)
            return pane
        plot = shown.fit.plot.copy()
        mark_points(plot, shown.trail)
        x = (w - plot.shape[1]) // 2
        pane[TITLE_H : TITLE_H + plot.shape[0], x : x + plot.shape[1]] = plot
        pane[TITLE_H + plot.shape[0] : TITLE_H + plot.shape[0] + LEGEND_H] = shown.fit.legend
        for y, line in zip((13, 28), shown.caption):
            put_text(pane, fit_text(line, w - 8, 0.4), (4, y), 0.4)
        return pane


def install_map(app):
    """Plugin for ``LiveOptions.plugins``: stage "map" and the zoom pane while the map is on."""
    source = latent_source(app)
    size = app.view.pane_size("zoom")
    if size is None:
        return None
    live_map = LiveMap(source, app.tasks, size)
    app.compute.add_stage("map", live_map.stage, depends_on=(SHOWN, METHOD))
    app.view.add_pane_provider("zoom", lambda result, state: live_map.pane(result, state)
                               if state.extras.get(SHOWN) else None)
    app.view.status_flags.append(lambda state: f"map {NAMES[state.extras.get(METHOD, 'pca')]}"
                                 if state.extras.get(SHOWN) else None)
    app.latent_map = live_map
    return live_map
