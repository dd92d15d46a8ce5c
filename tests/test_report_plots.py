"""The report's plots: what they draw (lines, rows, labels) and that the picture is not empty."""
from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from toolbox.render.report.plots import (channel_activity_figure, class_timeline_figure, feature_change_figure,
                                         figure_image, layer_activity_figure)

TIMES = np.arange(40) / 10.0
CUTS = [1.95]


def informative(image: np.ndarray, min_std: float = 20.0, min_colours: int = 50) -> bool:
    """A picture with content: spread-out pixel values and many distinct colours (an empty or
    one-colour plot has neither)."""
    colours = len(np.unique(image.reshape(-1, 3), axis=0))
    return float(image.std()) >= min_std and colours >= min_colours


def test_the_informative_check_rejects_empty_and_constant_pictures():
    empty = Figure(figsize=(4, 3))
    assert not informative(figure_image(empty))
    assert not informative(np.full((100, 100, 3), 128, np.uint8))


def test_class_timeline_draws_one_line_per_class_and_the_cuts():
    p = np.stack([np.where(TIMES < 2, 0.8, 0.1), np.where(TIMES < 2, 0.1, 0.7), np.full(40, 0.05)], axis=1)
    figure = class_timeline_figure(TIMES, p, ["Egyptian cat", "espresso", "tabby"], CUTS)
    ax = figure.axes[0]
    lines = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert [line.get_label() for line in lines] == ["Egyptian cat", "espresso", "tabby"]
    np.testing.assert_allclose(lines[1].get_ydata(), p[:, 1])
    cuts = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in cuts] == CUTS
    assert ax.get_title() and ax.get_xlabel() == "time (s)" and ax.get_legend() is not None
    image = figure_image(figure)
    assert image.dtype == np.uint8 and image.shape[2] == 3 and informative(image)


def test_class_timeline_names_the_first_classes_and_greys_the_rest():
    p = np.random.default_rng(0).random((40, 12)) / 12
    labels = [f"class {i}" for i in range(12)]
    figure = class_timeline_figure(TIMES, p, labels, named=9)
    ax = figure.axes[0]
    assert len(ax.lines) == 12
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == labels[:9] + ["3 other classes"]
    colours = {line.get_color() for line in ax.lines[:9]}
    assert len(colours) == 9 and all(line.get_color() == "0.7" for line in ax.lines[9:])
    assert informative(figure_image(figure))


def test_class_timeline_refuses_mismatched_or_empty_input():
    with pytest.raises(ValueError):
        class_timeline_figure(TIMES, np.zeros((40, 2)), ["one"])
    with pytest.raises(ValueError):
        class_timeline_figure(np.zeros(0), np.zeros((0, 1)), ["one"])


def test_feature_change_plots_distances_between_frames_with_the_threshold():
    distances = np.full(39, 0.01)
    distances[19] = 0.8
    figure = feature_change_figure(TIMES, distances, 0.1, CUTS)
    ax = figure.axes[0]
    curve = ax.lines[0]
    assert curve.get_xdata()[np.argmax(curve.get_ydata())] == pytest.approx(1.95)  # halfway between frames 19 and 20
    assert any(line.get_ydata()[0] == 0.1 for line in ax.lines[1:])
    assert informative(figure_image(figure), min_colours=20)


def test_layer_activity_heat_map_has_one_labelled_row_per_layer_each_normalised():
    means = np.stack([np.linspace(0, 1, 40), np.linspace(5, 3, 40), np.full(40, 2.0)], axis=1)
    figure = layer_activity_figure(TIMES, means, ["a", "b", "c"], CUTS)
    ax = figure.axes[0]
    data = ax.images[0].get_array()
    assert data.shape == (3, 40)
    np.testing.assert_allclose(data[0, [0, -1]], [0, 1])
    np.testing.assert_allclose(data[1, [0, -1]], [1, 0])
    assert np.all(data[2] == 0)  # a constant layer is flat, not noise stretched to full range
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert informative(figure_image(figure))


def test_channel_activity_labels_the_most_active_channels():
    rng = np.random.default_rng(0)
    means = rng.random((40, 32))
    figure = channel_activity_figure(TIMES, means, "_blocks.8", [7, 3, 20], CUTS)
    every, chosen = figure.axes[:2]
    assert every.images[0].get_array().shape == (32, 40)
    np.testing.assert_allclose(chosen.images[0].get_array()[0], (means[:, 7] - means[:, 7].min()) / np.ptp(means[:, 7]))
    assert [t.get_text() for t in chosen.get_yticklabels()] == ["ch 7", "ch 3", "ch 20"]
    assert "_blocks.8" in every.get_title()
    image = figure_image(figure)
    assert informative(image)


def test_figure_image_matches_what_matplotlib_saves(tmp_path):
    figure = class_timeline_figure(TIMES, np.linspace(0, 1, 40)[:, None], ["x"])
    figure.savefig(tmp_path / "saved.png", dpi=figure.dpi)
    saved = (matplotlib.image.imread(tmp_path / "saved.png")[:, :, :3] * 255).round().astype(np.uint8)
    image = figure_image(figure)
    assert image.shape == saved.shape
    assert np.abs(image[:, :, ::-1].astype(int) - saved).mean() < 1.0
