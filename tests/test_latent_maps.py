"""2-D maps: seeded determinism, transforms that put indexed points back where the map has them, the
atlas drawing, the coordinates file."""
from __future__ import annotations

import csv
import io

import cv2
import numpy as np
import pytest

from toolbox.analysis.latent.maps import fit_map
from toolbox.analysis.latent.placement import NeighbourPlacement, knn_placement
from toolbox.errors import DeepvisError
from toolbox.jobs.map import draw_map
from toolbox.render.atlas import atlas_plot, categorical_colours, legend_strip, mark_points


@pytest.fixture(scope="module")
def clusters():
    """150 vectors in three well separated Gaussian clusters (32-d), and their cluster labels."""
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=6.0, size=(3, 32))
    labels = np.repeat(np.arange(3), 50)
    return (centres[labels] + rng.normal(size=(150, 32))).astype(np.float32), labels


def extent(coords: np.ndarray) -> float:
    return float(np.linalg.norm(coords.max(0) - coords.min(0)))


def test_pca_map_is_the_projection_on_the_top_two_principal_axes(demo_index):
    fitted = fit_map(demo_index.vectors, "pca")
    x = demo_index.vectors.astype(np.float64)
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    np.testing.assert_allclose(np.abs(fitted.coords), np.abs(expected), rtol=1e-3, atol=1e-3 * extent(expected))
    np.testing.assert_allclose(fitted.transform(demo_index.vectors), fitted.coords, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_the_same_seed_gives_the_same_map(method, clusters):
    vectors, _ = clusters
    np.testing.assert_array_equal(fit_map(vectors, method, seed=3).coords, fit_map(vectors, method, seed=3).coords)


@pytest.fixture(scope="module")
def trajectory():
    """200 vectors on a smooth random walk in 32-d: consecutive video frames in feature space."""
    return np.cumsum(np.random.default_rng(0).normal(size=(200, 32)), 0).astype(np.float32)


# UMAP's and openTSNE's transforms start a new point at the weighted mean of its nearest fitted points'
# positions and optimise it against the fixed map. For an indexed point on a smooth trajectory those
# neighbours are its neighbours on the map too, so it lands within a few per cent of the map's size
# of its own position (measured: openTSNE 1.0 %, UMAP 1.3 %); 3 % leaves room for other seeds and
# versions, while a transform that ignored the fitted map would land anywhere (tens of per cent).
PLACEMENT_TOLERANCE = 0.03


def test_opentsne_places_indexed_points_back_where_the_map_has_them(trajectory):
    fitted = fit_map(trajectory, "tsne", seed=0)
    error = np.linalg.norm(fitted.transform(trajectory[::10]) - fitted.coords[::10], axis=1)
    assert error.max() < PLACEMENT_TOLERANCE * extent(fitted.coords), error.max() / extent(fitted.coords)


@pytest.mark.slow  # umap-learn compiles its numba kernels on first use (10-30 s)
def test_umap_is_seeded_and_places_indexed_points_back_where_the_map_has_them(trajectory):
    fitted = fit_map(trajectory, "umap", seed=0)
    np.testing.assert_array_equal(fit_map(trajectory, "umap", seed=0).coords, fitted.coords)
    error = np.linalg.norm(fitted.transform(trajectory[::10]) - fitted.coords[::10], axis=1)
    assert error.max() < PLACEMENT_TOLERANCE * extent(fitted.coords), error.max() / extent(fitted.coords)


def test_atlas_puts_each_group_s_thumbnail_where_its_points_are():
    coords = np.array([[0, 0], [0.1, 0], [10, 10], [10, 0], [0, 10]], np.float32)
    colours_rgb = [(0, 0, 255), (0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255)]
    thumbs = np.stack([np.full((16, 16, 3), c, np.uint8) for c in colours_rgb])
    colours, legend = categorical_colours(["a", "a", "b", "c", "d"])
    plot, frame = atlas_plot(coords, thumbs, colours, side=200, grid=10)
    for (x, y), colour in zip(frame.to_pixels(coords)[1:], colours_rgb[1:]):
        x, y = min(max(x, 10), 189), min(max(y, 10), 189)
        cell = plot[y // 20 * 20 + 8 : y // 20 * 20 + 12, x // 20 * 20 + 8 : x // 20 * 20 + 12]
        assert (cell == colour).all(), (x, y, cell[0, 0], colour)
    assert [(label, count) for label, _, count in legend] == [("a", 2), ("b", 1), ("c", 1), ("d", 1)]
    assert frame.to_pixels(np.array([[10, 10]]))[0, 1] < frame.to_pixels(np.array([[0, 0]]))[0, 1]  # y up


def test_trail_ends_in_a_ring_at_the_newest_point():
    image = np.zeros((100, 100, 3), np.uint8)
    mark_points(image, np.array([[10, 10], [50, 50], [80, 20]]))
    assert image[20, 80 + 6].max() == 255 and image[20, 80 + 3].max() == 0  # a ring: bright edge, hollow inside
    assert image[30, 30].max() > 0  # the line of the trail


def test_map_command_writes_a_deterministic_atlas_and_the_coordinates(demo_index, tmp_path):
    a = draw_map(demo_index.folder, tmp_path / "a.png", "pca", color="source", seed=1)
    b = draw_map(demo_index.folder, tmp_path / "b.png", "pca", color="source", seed=1)
    np.testing.assert_array_equal(cv2.imread(str(a.image)), cv2.imread(str(b.image)))
    rows = list(csv.DictReader(open(a.coords)))
    assert len(rows) == len(demo_index)
    np.testing.assert_allclose([[float(r["x"]), float(r["y"])] for r in rows], a.fitted.coords, atol=1e-5)
    assert {r["source"] for r in rows} == {"bikes", "carphone"}
    image = cv2.imread(str(a.image))
    assert image.shape == (750, 980, 3) and (image[30:, :720] != (24, 24, 24)).any(axis=2).mean() > 0.02


def test_map_bad_inputs_are_one_line_errors(demo_index, tmp_path):
    with pytest.raises(DeepvisError, match="ending in .png"):
        draw_map(demo_index.folder, tmp_path / "map.txt")
    with pytest.raises(DeepvisError, match="no index at"):
        draw_map(tmp_path / "none", tmp_path / "m.png")


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "umap", None)  # "import umap" now fails
    with pytest.raises(DeepvisError, match=r"pip install 'deepvis\[latent\]'"):
        fit_map(np.zeros((10, 4), np.float32), "umap")


def test_knn_placement_is_the_inverse_distance_weighted_mean_of_the_neighbours_positions():
    coords = np.array([[0, 0], [4, 0], [0, 2], [9, 9]], np.float32)
    distances = np.array([[1.0, 2.0, 4.0], [3.0, 0.0, 1.0]])
    ids = np.array([[0, 1, 2], [3, 1, -1]])
    # written out: weights 1/1, 1/2, 1/4 -> (0*1 + 4/2 + 0/4, 0 + 0 + 2/4) / 1.75
    expected_first = np.array([2.0 / 1.75, 0.5 / 1.75])
    got = knn_placement(distances, ids, coords)
    np.testing.assert_allclose(got[0], expected_first, rtol=1e-6)
    np.testing.assert_array_equal(got[1], coords[1])  # a neighbour at distance 0 takes all the weight
    with pytest.raises(ValueError, match="at least one neighbour"):
        knn_placement(np.ones((1, 2)), np.full((1, 2), -1), coords)


def test_neighbour_placement_puts_a_fitted_vector_exactly_on_its_own_map_point(clusters):
    vectors, _ = clusters
    fitted = fit_map(vectors, "tsne", seed=0)
    placement = NeighbourPlacement(vectors, fitted.coords, k=8)
    np.testing.assert_array_equal(placement.place(vectors[::7]), fitted.coords[::7])
    np.testing.assert_array_equal(placement.place(vectors[3]), fitted.coords[3:4])  # one (D,) vector


@pytest.mark.parametrize("method", ["tsne", pytest.param("umap", marks=pytest.mark.slow)])
def test_a_query_near_a_cluster_is_placed_inside_that_cluster_s_region(method, clusters):
    vectors, labels = clusters
    fitted = fit_map(vectors, method, seed=0, epochs=200)
    placement = NeighbourPlacement(vectors, fitted.coords, k=8)
    rng = np.random.default_rng(1)
    centres = np.stack([vectors[labels == c].mean(0) for c in range(3)])
    for c in range(3):
        queries = centres[c] + 0.5 * rng.normal(size=(5, vectors.shape[1])).astype(np.float32)
        placed = placement.place(queries)
        own = fitted.coords[labels == c]
        others = fitted.coords[labels != c]
        # inside the region: nearer the cluster's own map points than any other cluster's, and within
        # the cluster's bounding box on the map
        for p in placed:
            assert np.linalg.norm(own - p, axis=1).min() < np.linalg.norm(others - p, axis=1).min()
            assert (p >= own.min(0)).all() and (p <= own.max(0)).all()


@pytest.mark.parametrize("method", ["tsne", pytest.param("umap", marks=pytest.mark.slow)])
def test_map_fits_report_progress_and_stop_when_the_progress_callback_raises(method, clusters):
    vectors, _ = clusters
    seen = []
    plain = fit_map(vectors, method, seed=0, epochs=100)
    reported = fit_map(vectors, method, seed=0, progress=seen.append, epochs=100)
    np.testing.assert_array_equal(reported.coords, plain.coords)  # following the fit does not change it
    assert seen == sorted(seen) and seen[0] < 0.1 and seen[-1] == 1.0

    class Stop(Exception):
        pass

    def stop_halfway(fraction):
        if fraction > 0.5:
            raise Stop()

    def stop_at_once(fraction):  # cancelled before the fit's first report
        raise Stop()

    for stop in (stop_halfway, stop_at_once):
        with pytest.raises(Stop):
            fit_map(vectors, method, seed=0, progress=stop, epochs=100)
    # the stopped fit left no lock behind: a progress bar on another thread still runs (umap-learn's
    # epochs run under tqdm, whose refresh leaks its process-wide lock when a write raises)
    import threading

    from tqdm import tqdm

    other = threading.Thread(target=lambda: list(tqdm(range(3), disable=False, file=io.StringIO())))
    other.start()
    other.join(10)
    assert not other.is_alive(), "tqdm's lock is still held"


def test_legend_strip_shows_the_first_classes_swatches_left_to_right_and_cuts_what_does_not_fit():
    entries = [("cat", (0, 0, 255), 5), ("dog", (0, 255, 0), 3), ("a very long label" * 4, (255, 0, 0), 1)]
    strip = legend_strip(entries, 16, 110)
    columns = [np.flatnonzero(np.all(strip[8] == c, axis=1)) for c, in [((0, 0, 255),), ((0, 255, 0),)]]
    assert all(len(c) >= 8 for c in columns) and columns[0].max() < columns[1].min()
    wide = legend_strip(entries, 16, 600)
    assert np.all(wide[8] == (255, 0, 0), axis=1).sum() >= 8 and not np.all(strip[8] == (255, 0, 0), axis=1).any()
