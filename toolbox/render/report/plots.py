"""The report's plots, drawn with matplotlib's Agg backend (no display): class timeline, feature
change, layer activity and channel activity over time.

Each ``*_figure`` function returns a matplotlib Figure (its axes can be inspected);
``figure_image`` turns one into an (H, W, 3) uint8 BGR array, the format every other deepvis
picture has, and closes it.
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # before pyplot: never a window, also without a display

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from toolbox.analysis.frame_stats import rows_normalised  # noqa: E402

WIDTH_IN = 11.0
DPI = 100
NAMED_CLASSES = 9  # classes of the timeline with a colour and a legend entry
CUT_STYLE = dict(color="black", linestyle="--", linewidth=1.0, alpha=0.7)


def _figure(height_in: float) -> tuple[Figure, object]:
    figure = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _require_frames(times: np.ndarray) -> np.ndarray:
    times = np.asarray(times, np.float64)
    if times.ndim != 1 or len(times) == 0:
        raise ValueError("a plot over time needs at least one frame")
    return times


def _mark_cuts(ax, cut_times: Sequence[float], **style) -> None:
    for i, t in enumerate(cut_times):
        ax.axvline(t, **{**CUT_STYLE, **style}, label="shot boundary" if i == 0 else None)


def _time_span(times: np.ndarray) -> tuple[float, float]:
    """The x range of a plot over time: first to last frame, or one second around a single frame."""
    return (times[0], times[-1]) if times[-1] > times[0] else (times[0] - 0.5, times[0] + 0.5)


def _finish_line_plot(ax, times: np.ndarray, cut_times: Sequence[float], ylabel: str, title: str) -> None:
    """Cut lines, the time axis over all frames, labels, grid and the legend outside on the right."""
    _mark_cuts(ax, cut_times)
    ax.set_xlim(*_time_span(times))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)


def class_timeline_figure(times: np.ndarray, probabilities: np.ndarray, labels: Sequence[str],
                          cut_times: Sequence[float] = (), named: int = NAMED_CLASSES) -> Figure:
    """One line per class over time. times (T,) seconds; probabilities (T, n) in [0, 1], column i
    is class ``labels[i]``, most important first; cut_times: shot boundaries (dashed vertical lines).
    The first ``named`` classes get a colour and a legend entry, the rest thin grey lines under
    one legend entry (a long video has dozens of classes that reach the top 3 somewhere)."""
    times = _require_frames(times)
    probabilities = np.asarray(probabilities, np.float64).reshape(len(times), -1)
    if probabilities.shape[1] != len(labels):
        raise ValueError(f"{probabilities.shape[1]} probability columns for {len(labels)} labels")
    figure, ax = _figure(3.6)
    tab10 = matplotlib.colormaps["tab10"].colors
    colours = tab10[:7] + tab10[8:]  # tab10 without its grey, which the other classes use
    marker = "." if len(times) < 60 else None
    for i, label in enumerate(labels[:named]):
        ax.plot(times, probabilities[:, i], label=label, color=colours[i % len(colours)], linewidth=1.6,
                marker=marker, zorder=2)
    others = len(labels) - named
    for i in range(named, len(labels)):
        ax.plot(times, probabilities[:, i], color="0.7", linewidth=0.8, marker=marker, zorder=1,
                label=f"{others} other classes" if i == named else "_other")
    ax.set_ylim(0, 1)
    _finish_line_plot(ax, times, cut_times, "probability",
                      "Class probabilities over time (every class that reaches the top 3)")
    return figure


def feature_change_figure(times: np.ndarray, distances: np.ndarray, threshold: float,
                          cut_times: Sequence[float] = ()) -> Figure:
    """Cosine distance of each frame's deep features to the previous frame's, with the adaptive
    threshold. times (T,); distances (T-1,): distance i compares frames i and i+1 and is drawn
    halfway between them, where a cut between them is marked."""
    times = _require_frames(times)
    figure, ax = _figure(2.2)
    ax.plot((times[:-1] + times[1:]) / 2, distances, color="tab:blue", linewidth=1.4, label="feature change")
    ax.axhline(threshold, color="tab:red", linewidth=1.0, label=f"threshold {threshold:.3f}")
    ax.set_ylim(0, max(float(np.max(distances, initial=0.0)), threshold) * 1.1 + 1e-6)
    _finish_line_plot(ax, times, cut_times, "cosine distance",
                      "Change of penultimate-layer features between consecutive frames")
    return figure


def _time_heatmap(ax, times: np.ndarray, matrix: np.ndarray):
    """Rows of ``matrix`` (R, T) normalised each to [0, 1], drawn over time; returns the image."""
    half = (times[1] - times[0]) / 2 if len(times) > 1 else 0.5
    extent = (times[0] - half, times[-1] + half, matrix.shape[0] - 0.5, -0.5)
    return ax.imshow(rows_normalised(matrix), aspect="auto", interpolation="nearest", cmap="viridis",
                     extent=extent, vmin=0, vmax=1)


def layer_activity_figure(times: np.ndarray, layer_means: np.ndarray, layers: Sequence[str],
                          cut_times: Sequence[float] = ()) -> Figure:
    """Heat map of layers x time: layer_means (T, L), each layer's row scaled to its own range."""
    times = _require_frames(times)
    matrix = np.asarray(layer_means, np.float64).reshape(len(times), -1).T
    figure, ax = _figure(0.8 + 0.22 * len(layers))
    image = _time_heatmap(ax, times, matrix)
    ax.set_yticks(range(len(layers)), labels=list(layers), fontsize=8)
    _mark_cuts(ax, cut_times, color="white")
    ax.set_xlabel("time (s)")
    ax.set_title("Mean activation of every visualisable layer (each row normalised to its own range)")
    figure.colorbar(image, ax=ax, label="relative activation", pad=0.01)
    return figure


def channel_activity_figure(times: np.ndarray, channel_means: np.ndarray, layer: str, labelled: Sequence[int],
                            cut_times: Sequence[float] = ()) -> Figure:
    """Two heat maps over time for one layer, each row scaled to its own range: above, every channel
    (channel_means (T, C)) with the ``labelled`` ones marked on the right edge; below, the
    ``labelled`` channels alone (the most active, in the given order), one labelled row each."""
    times = _require_frames(times)
    matrix = np.asarray(channel_means, np.float64).reshape(len(times), -1).T
    labelled = [int(c) for c in labelled]
    figure = Figure(figsize=(WIDTH_IN, 6.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    every, chosen = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    image = _time_heatmap(every, times, matrix)
    every.set_ylabel(f"channel (of {matrix.shape[0]})")
    every.set_title(f"Channels of {layer} over time (each row normalised to its own range)")
    right = every.secondary_yaxis("right")
    right.set_yticks(sorted(labelled), labels=["<"] * len(labelled), color="tab:red", fontsize=7)
    _mark_cuts(every, cut_times, color="white")
    _time_heatmap(chosen, times, matrix[labelled])
    chosen.set_yticks(range(len(labelled)), labels=[f"ch {c}" for c in labelled], fontsize=8)
    chosen.set_title(f"The {len(labelled)} most active channels (marked < above)")
    _mark_cuts(chosen, cut_times, color="white")
    chosen.set_xlabel("time (s)")
    figure.colorbar(image, ax=[every, chosen], label="relative activation", pad=0.01)
    return figure


def figure_image(figure: Figure) -> np.ndarray:
    """Draw ``figure`` -> (H, W, 3) uint8 BGR; the figure is released afterwards."""
    canvas = figure.canvas if isinstance(figure.canvas, FigureCanvasAgg) else FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    image = np.ascontiguousarray(rgba[:, :, 2::-1])
    figure.clear()
    return image
