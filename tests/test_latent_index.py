"""Feature index and nearest neighbours: faiss search against a torch brute-force oracle, provenance,
resuming, appending, refusing another recipe, the rolling live memory."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from toolbox.analysis.latent.memory import Remembered, RollingMemory
from toolbox.analysis.latent.search import VectorSearch
from toolbox.config import load_config
from toolbox.errors import DeepvisError
from toolbox.jobs import index as index_job
from toolbox.jobs.index import build_index
from toolbox.jobs.index_store import IndexStore, load_index
from toolbox.jobs.neighbours import neighbours


def oracle(vectors: np.ndarray, queries: np.ndarray, k: int):
    """Brute force: torch.cdist + topk (smallest)."""
    d = torch.cdist(torch.from_numpy(queries).double(), torch.from_numpy(vectors).double())
    dist, ids = d.topk(k, largest=False)
    return dist.numpy(), ids.numpy()


def test_exact_search_equals_cdist_topk_on_random_vectors():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 96)).astype(np.float32)
    queries = rng.normal(size=(20, 96)).astype(np.float32)
    search = VectorSearch(vectors)
    dist, ids = search.search(queries, 10)
    want_dist, want_ids = oracle(vectors, queries, 10)
    assert search.kind == "exact"
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-4)


def test_beyond_the_exact_limit_an_approximate_index_is_chosen_and_finds_most_true_neighbours():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(4000, 32)).astype(np.float32)
    queries = rng.normal(size=(50, 32)).astype(np.float32)
    search = VectorSearch(vectors, exact_limit=1000)
    _, ids = search.search(queries, 10)
    _, want = oracle(vectors, queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want)])
    assert search.kind == "approximate (HNSW)" and recall > 0.9


def test_index_records_provenance_thumbnails_classes_and_recipe(demo_index):
    assert len(demo_index) == demo_index.vectors.shape[0] == demo_index.thumbnails.shape[0]
    assert demo_index.vectors.shape[1] == 1280  # lite0 _relu1, mean-pooled
    assert demo_index.thumbnails.shape[1:] == (64, 64, 3)
    first = demo_index.items[0]
    assert first["source"] == "bikes" and first["frame"] == 0 and first["time"] == 0.0
    assert demo_index.items[1]["frame"] == 10 and demo_index.items[1]["time"] == pytest.approx(10 / 25, abs=0.02)
    assert {i["source"] for i in demo_index.items} == {"bikes", "carphone"}
    assert all(isinstance(i["class"], str) and 0 <= i["probability"] <= 1 for i in demo_index.items)
    assert demo_index.recipe.layer == "_relu1" and demo_index.recipe.model == "lite0"


def test_neighbours_of_real_frames_equal_brute_force(demo_index):
    dist, ids = VectorSearch(demo_index.vectors).search(demo_index.vectors[::3], 5)
    want_dist, want_ids = oracle(demo_index.vectors, demo_index.vectors[::3], 5)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-3, atol=1e-2)


def test_an_indexed_frame_is_its_own_nearest_neighbour_at_distance_zero(demo_index, tmp_path):
    item = demo_index.items[3]  # bikes frame 30
    result = neighbours(f"bikes@{item['frame']}", demo_index.folder, tmp_path, load_config(), k=3)
    best = result.neighbours[0]
    assert best.id == 3
    assert best.distance < 1e-3 * np.linalg.norm(demo_index.vectors[3])  # batch-of-1 vs batch-of-16 rounding
    records = json.loads(result.json.read_text())
    assert [r["distance"] for r in records] == sorted(r["distance"] for r in records)
    assert set(records[0]) >= {"source", "frame", "time", "distance"}


def test_neighbours_of_bikes_frames_come_mostly_from_bikes(demo_index):
    sources = np.array([i["source"] for i in demo_index.items])
    bikes = np.flatnonzero(sources == "bikes")
    _, ids = VectorSearch(demo_index.vectors).search(demo_index.vectors[bikes], 6)
    others = ids[:, 1:]  # the first is the frame itself
    assert np.mean(sources[others] == "bikes") > 0.8


def test_montage_holds_the_query_and_k_captioned_neighbours(demo_index, tmp_path):
    import cv2

    result = neighbours("#5", demo_index.folder, tmp_path, load_config(), k=4)
    assert [n.id for n in result.neighbours] and 5 not in [n.id for n in result.neighbours]
    image = cv2.imread(str(result.montage))
    # five framed tiles: the amber query frame and four grey ones
    amber = np.all(image == (60, 200, 255), axis=2)
    assert amber.sum() > 4 * 150  # a 2-px frame around a 160-px tile


def test_an_interrupted_build_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    config = load_config()
    whole = tmp_path / "whole"
    build_index(["carphone"], whole, config, every=9, progress=False)
    part = tmp_path / "part"
    calls = {"n": 0}
    original = IndexStore.append

    def append_then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(IndexStore, "append", append_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_index(["carphone"], part, config, every=9, progress=False, checkpoint=5, batch=4)
    monkeypatch.setattr(IndexStore, "append", original)
    assert IndexStore(part).count in (5, 6, 7, 8)  # one checkpoint made it to disk
    result = build_index(["carphone"], part, config, every=9, progress=False, checkpoint=5, batch=4)
    a, b = load_index(whole), load_index(part)
    assert result.total == len(a) and [i["frame"] for i in b.items] == [i["frame"] for i in a.items]
    np.testing.assert_allclose(b.vectors, a.vectors, rtol=1e-4, atol=1e-4)


def test_appending_adds_a_source_and_another_recipe_is_refused_naming_both(tmp_path):
    config = load_config()
    folder = tmp_path / "idx"
    build_index(["carphone"], folder, config, every=30, progress=False)
    first = IndexStore(folder).count
    result = build_index(["bikes"], folder, config, every=50, progress=False)
    assert result.total == first + result.added and result.added == 5
    assert build_index(["bikes"], folder, config, every=50, progress=False).skipped_sources == ["bikes"]
    other = load_config(overrides={"model.layer": "_blocks.3"})
    with pytest.raises(DeepvisError, match=r"built with model lite0 .* layer _relu1.*this run uses .*layer _blocks\.3"):
        build_index(["bikes"], folder, other, every=50, progress=False)
    with pytest.raises(DeepvisError, match=r"model lite0 .*this run uses model resnet18"):
        build_index(["bikes"], folder, load_config(overrides={"model.name": "resnet18", "model.weights": "none"}),
                    progress=False)


def test_an_index_of_a_random_resnet18_searches_like_the_oracle(tmp_path):
    config = load_config(overrides={"model.name": "resnet18", "model.weights": "none"})
    build_index(["bikes"], tmp_path / "r18", config, every=25, progress=False, batch=5)
    index = load_index(tmp_path / "r18")
    assert index.vectors.shape == (10, 512) and index.recipe.layer == "layer4.1"
    _, ids = VectorSearch(index.vectors).search(index.vectors, 4)
    np.testing.assert_array_equal(ids, oracle(index.vectors, index.vectors, 4)[1])


def test_an_empty_or_missing_index_is_an_error(tmp_path):
    with pytest.raises(DeepvisError, match="no index at"):
        load_index(tmp_path / "nothing")
    store = IndexStore(tmp_path / "empty")
    store.start(index_job.IndexRecipe("lite0", "x", "_relu1", "mean", {}))
    store.append(np.zeros((0, 0), np.float32), np.zeros((0, 64, 64, 3), np.uint8), [], {})
    with pytest.raises(DeepvisError, match="is empty"):
        load_index(tmp_path / "empty")


def test_rolling_memory_skips_near_duplicates_wraps_and_searches_like_brute_force():
    rng = np.random.default_rng(2)
    memory = RollingMemory(capacity=50, duplicate_ratio=0.05)
    thumb = np.zeros((4, 4, 3), np.uint8)
    vectors = rng.normal(size=(80, 16)).astype(np.float32)
    for i, v in enumerate(vectors):
        assert memory.offer(v, Remembered(i, i / 25, thumb))
        assert not memory.offer(v * 1.01, Remembered(i, i / 25, thumb))  # a still scene: skipped
    assert len(memory) == 50
    assert not memory.offer(vectors[45] * 1.01, Remembered(99, 0.0, thumb))  # a looping video: kept already
    kept = vectors[30:]  # the oldest 30 were overwritten
    np.testing.assert_array_equal(memory.vectors(), kept)
    query = vectors[40] + 1.0
    assert memory.offer(query, Remembered(100, 4.0, thumb))  # kept: the search reuses its distances
    kept = np.concatenate([vectors[31:], query[None]])
    found = memory.search(query, 5)
    fresh = memory.search(query.copy(), 5)  # the same answer computed afresh
    assert [i.frame for _, i in fresh] == [i.frame for _, i in found]
    np.testing.assert_allclose([d for d, _ in fresh], [d for d, _ in found], atol=1e-3)
    query_frames = [i.frame for i in memory.items()]
    want_dist, want_ids = oracle(kept, query[None], 5)
    assert [item.frame for _, item in found] == [query_frames[int(i)] for i in want_ids[0]]
    np.testing.assert_allclose([d for d, _ in found], want_dist[0], rtol=1e-4, atol=1e-3)
    found = memory.search(vectors[40], 5)
    want_dist, want_ids = oracle(kept, vectors[40:41], 5)
    assert [item.frame for _, item in found] == [query_frames[int(i)] for i in want_ids[0]]
    np.testing.assert_allclose([d for d, _ in found], want_dist[0], rtol=1e-4, atol=1e-4)


def test_a_patch_index_holds_one_vector_per_position_with_its_receptive_field_crop(lite0, tmp_path):
    import torch

    from toolbox.models.receptive_field import receptive_field
    from toolbox.sources import open_source

    config = load_config(overrides={"model.layer": "_blocks.8"})
    build_index(["carphone"], tmp_path / "p", config, every=60, progress=False, patches=True)
    index = load_index(tmp_path / "p")
    assert index.recipe.pool == "patch" and index.recipe.layer == "_blocks.8"
    assert index.vectors.shape == (2 * 14 * 14, 112)  # frames 0 and 60, 14 x 14 positions of 112 channels
    with open_source("carphone") as source:
        view = lite0.preprocess.model_view(source.read().image)
    with torch.inference_mode():
        from toolbox.models.capture import forward_with_activations

        _, acts = forward_with_activations(lite0.module, lite0.input_tensor(view), ["_blocks.8"])
    item = index.items[3 * 14 + 5]
    assert (item["frame"], item["y"], item["x"]) == (0, 3, 5)
    np.testing.assert_allclose(index.vectors[3 * 14 + 5], acts["_blocks.8"][0, :, 3, 5].numpy(), rtol=1e-4, atol=1e-4)
    assert item["box"] == list(receptive_field(lite0, "_blocks.8").clipped_box(3, 5, 224, 224))
    found = neighbours(f"#{3 * 14 + 5}", tmp_path / "p", tmp_path / "n", load_config(), k=3).neighbours
    _, want = oracle(index.vectors, index.vectors[3 * 14 + 5][None], 4)
    assert [n.id for n in found] == [int(i) for i in want[0][1:]]  # the patch itself left out


def test_the_commands_run_end_to_end(tmp_path, capsys):
    from toolbox.cli import main

    assert main(["index", "carphone", "--every", "40", "--out", str(tmp_path / "idx"), "--quiet"]) == 0
    assert "added 3 frames" in capsys.readouterr().out
    assert main(["neighbours", "carphone@1.5s", "--index", str(tmp_path / "idx"), "-k", "2",
                 "--out", str(tmp_path / "nb")]) == 0
    assert len(json.loads((tmp_path / "nb" / "neighbours.json").read_text())) == 2
    assert main(["map", str(tmp_path / "idx"), "--out", str(tmp_path / "map.png"), "--grid", "4"]) == 0
    assert (tmp_path / "map.png").is_file() and len((tmp_path / "map.csv").read_text().splitlines()) == 4
