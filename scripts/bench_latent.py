"""Benchmark the latent-space tools. Prints one JSON object.

    python scripts/bench_latent.py [--frames 96] [--repeats 3] [--sizes 10000,100000,1000000] [--dim 1280]
                                   [--dim-1m 256]

- index build: frames/s of ``build_index`` against a forward-only pass over the same frames (decode,
  centre crop, batched forward; no pooling, thumbnails or writing), measured alternately in the same
  process, ``--repeats`` times each (the machine may be shared: the JSON gives every run);
- query latency: one exact query (k = 8) with faiss against scikit-learn's brute-force
  NearestNeighbors, at each size (random vectors; 1M vectors at ``--dim-1m`` dimensions so that they
  fit in memory twice);
- live pane overhead per frame: the latent stage (pooling + the rolling memory, full), the neighbours
  stage (memory search, and index search at 10k), the map stage (PCA transform, or the k-NN placement
  on a UMAP / t-SNE map of the full memory, + pixel position), and drawing the neighbours and map panes;
- UMAP live placement: umap-learn's transform of one new point against the k-NN placement, and the
  longest stall of another thread while a UMAP map is fitted in the background.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toolbox.runtime import keep_freed_memory  # noqa: E402


def _ms(fn, repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
            "max_ms": round(max(times), 3), "runs": repeats}


def bench_build(frames: int, repeats: int) -> dict:
    from toolbox.config import load_config
    from toolbox.jobs.index import BATCH, build_index
    from toolbox.models import load_model
    from toolbox.sources import open_source

    config = load_config()
    model = load_model("lite0")

    def forward_only() -> float:
        start = time.perf_counter()
        with open_source("bikes") as source:
            views = []
            for frame in source:
                if frame.index >= frames:
                    break
                views.append(model.preprocess.model_view(frame.image))
                if len(views) == BATCH:
                    with torch.inference_mode():
                        model.module(model.input_tensor(views))
                    views = []
            if views:
                with torch.inference_mode():
                    model.module(model.input_tensor(views))
        return frames / (time.perf_counter() - start)

    def build() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            build_index(["bikes"], Path(tmp) / "idx", config, max_frames=frames, progress=False)
            return frames / (time.perf_counter() - start)

    forward_only()  # warm-up: first decode, allocator, oneDNN kernels
    runs = [(forward_only(), build()) for _ in range(repeats)]
    ratios = [b / f for f, b in runs]
    return {"frames": frames, "batch": BATCH, "forward_only_fps": [round(f, 1) for f, _ in runs],
            "index_build_fps": [round(b, 1) for _, b in runs], "ratio": [round(r, 3) for r in ratios],
            "ratio_median": round(statistics.median(ratios), 3), "goal": ">= 0.8"}


def bench_queries(sizes: list[int], dim: int, dim_1m: int, k: int = 8) -> list[dict]:
    """One query's latency; an exact query reads all n x d x 4 bytes (``scan_mb``), so memory
    bandwidth bounds it from below (100k x 1280 floats: 488 MB, ~25 ms at 20 GB/s)."""
    import faiss
    from sklearn.neighbors import NearestNeighbors

    from toolbox.analysis.latent.search import VectorSearch

    rng = np.random.default_rng(0)
    out = []
    for n in sizes:
        d = dim if n < 1_000_000 else dim_1m
        vectors = rng.standard_normal((n, d), dtype=np.float32)
        queries = rng.standard_normal((8, d), dtype=np.float32)
        start = time.perf_counter()
        search = VectorSearch(vectors)
        built = time.perf_counter() - start
        runs = 20 if n <= 100_000 else 5
        faiss_ms = _ms(lambda: search.search(queries[:1], k), runs)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # a busy machine: OpenMP threads wait for cores (the live pane uses 1)
        faiss_1_ms = _ms(lambda: search.search(queries[:1], k), runs)
        faiss.omp_set_num_threads(threads)
        sk = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="euclidean").fit(vectors)
        sk_ms = _ms(lambda: sk.kneighbors(queries[:1]), runs)
        same = bool(np.array_equal(search.search(queries, k)[1], sk.kneighbors(queries)[1]))
        out.append({"vectors": n, "dim": d, "search": search.kind, "faiss_build_s": round(built, 3),
                    "faiss_query": faiss_ms, "faiss_query_1_thread": faiss_1_ms, "sklearn_brute_query": sk_ms,
                    "scan_mb": round(n * d * 4 / 2**20),
                    "speedup": round(sk_ms["median_ms"] / faiss_ms["median_ms"], 2), "same_neighbours": same})
        del vectors, search, sk
    return out


def bench_live(repeats: int) -> dict:
    from toolbox.analysis.latent.memory import Remembered
    from toolbox.app.latent_source import MEMORY_FRAMES, LiveLatent
    from toolbox.analysis.latent.placement import NeighbourPlacement
    from toolbox.app.map_plugin import NEIGHBOURS, LiveFit, LiveMap
    from toolbox.app.tasks import TaskRunner
    from toolbox.jobs.index import recipe_for
    from toolbox.jobs.index_store import LoadedIndex
    from toolbox.models import load_model
    from toolbox.render.atlas import atlas_plot, categorical_colours
    from toolbox.render.montage import neighbours_pane

    model = load_model("lite0")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the live compute thread runs (live.torch_threads)
    rng = np.random.default_rng(0)
    thumb = np.zeros((64, 64, 3), np.uint8)
    latent = LiveLatent(model, model.layers)
    for i in range(MEMORY_FRAMES):  # a full memory: the most expensive near-duplicate check
        latent.memory.offer(rng.random(1280, dtype=np.float32) * 2, Remembered(i, i / 25, thumb, "x"))
    activation = torch.rand(1280, 7, 7)
    result = SimpleNamespace(activations={"_relu1": activation}, predictions=[], frame_index=10**6,
                             captured=SimpleNamespace(frame=SimpleNamespace(timestamp=0.0)),
                             view=np.zeros((224, 224, 3), np.uint8), extras={})
    vector = latent.stage(result, None)
    stage_ms = _ms(lambda: latent.stage(result, None), repeats)
    # per frame with the pane on: the stage, then the search for that same vector (which reuses the
    # distances the stage's near-duplicate check computed)
    memory_search = _ms(lambda: latent.nearest(latent.stage(result, None), 6, 0), repeats)
    items = [{"source": "bikes", "frame": i, "time": i / 25, "class": "x"} for i in range(10_000)]
    index = LoadedIndex(Path("bench"), recipe_for(model, "_relu1", "mean"), rng.random((10_000, 1280), dtype=np.float32),
                        np.zeros((10_000, 64, 64, 3), np.uint8), items)
    indexed = LiveLatent(model, model.layers, index)
    index_search = _ms(lambda: indexed.nearest(vector, 6, 0), repeats)
    live_map = LiveMap(latent, TaskRunner(), (320, 320))
    vectors, thumbs, classes = latent.map_data()
    from toolbox.analysis.latent.maps import fit_map

    fitted = fit_map(vectors, "pca")
    colours, _ = categorical_colours(classes)
    plot, frame = atlas_plot(fitted.coords, thumbs, colours, side=272, grid=8)
    legend = np.zeros((16, 320, 3), np.uint8)
    live_map.fits["pca"] = LiveFit(fitted, plot, legend, frame, len(vectors), len(vectors), time.monotonic(), None)
    # the k-NN placement's cost does not depend on which map's coordinates it averages: the PCA ones here
    placement = NeighbourPlacement(vectors, fitted.coords, NEIGHBOURS)
    live_map.fits["umap"] = LiveFit(fitted, plot, legend, frame, len(vectors), len(vectors), time.monotonic(),
                                  placement)
    state = SimpleNamespace(extras={"latent_map": True})
    knn_state = SimpleNamespace(extras={"latent_map": True, "latent_map_method": "umap"})
    live_map._requested = "umap"  # as after a fit: the stage starts nothing
    result.extras["latent"] = vector
    map_stage = _ms(lambda: live_map.stage(result, state), repeats)
    knn_stage = _ms(lambda: live_map.stage(result, knn_state), repeats)
    result.extras["map"] = live_map.stage(result, state)
    map_pane = _ms(lambda: live_map.pane(result, state), repeats)
    matches = latent.nearest(vector, 6, 0)
    pane = _ms(lambda: neighbours_pane([m.thumbnail for m in matches], [["d", "x"]] * 6, 440, 320, "t"), repeats)
    torch.set_num_threads(threads)
    total = sum(x["median_ms"] for x in (memory_search, map_stage, map_pane, pane))
    knn = {"map_stage_knn_placement": knn_stage, "k": NEIGHBOURS, "fitted_points": len(vectors),
           "ratio_to_pca_stage": round(knn_stage["median_ms"] / map_stage["median_ms"], 2),
           "total_both_panes_with_knn_placement_median_ms": round(total - map_stage["median_ms"]
                                                                  + knn_stage["median_ms"], 3)}
    return {"latent_stage_full_memory": stage_ms, "latent_stage_and_neighbours_memory_search": memory_search,
            "neighbours_index_search_10k": index_search, "map_stage_pca": map_stage, "map_pane_draw": map_pane,
            "neighbours_pane_draw": pane, "memory_frames": MEMORY_FRAMES,
            "total_both_panes_median_ms": round(total, 3), **knn, "goal": "< 3 ms"}


def bench_umap_placement(points: int, dim: int, repeats: int) -> dict:
    """One new point on a UMAP map of ``points`` random vectors: umap-learn's transform against the
    k-NN placement (both on one thread, after a warm-up call), and how long another thread stalls
    while the map is fitted in the background (the longest gap between its 1 ms sleeps; numba's
    layout epochs hold the GIL)."""
    import threading

    from toolbox.analysis.latent.maps import fit_map
    from toolbox.analysis.latent.placement import NeighbourPlacement
    from toolbox.app.map_plugin import NEIGHBOURS

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    vectors = np.cumsum(rng.normal(size=(points, dim)), 0).astype(np.float32)  # a trajectory, as video is
    fit_map(vectors[:64], "umap", epochs=5)  # numba compiles its kernels on first use
    gaps, done = [], threading.Event()

    def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = threading.Thread(target=ticker)
    tick.start()
    start = time.perf_counter()
    fitted = fit_map(vectors, "umap", seed=0)
    fit_s = time.perf_counter() - start
    done.set()
    tick.join()
    placement = NeighbourPlacement(vectors, fitted.coords, NEIGHBOURS)
    query = vectors[points // 2] + rng.normal(size=dim).astype(np.float32) * 0.1
    fitted.transform(query[None])
    transform = _ms(lambda: fitted.transform(query[None]), max(3, repeats // 20))
    knn = _ms(lambda: placement.place(query), repeats)
    torch.set_num_threads(threads)
    return {"points": points, "dim": dim, "umap_fit_s": round(fit_s, 2), "umap_transform_one_point": transform,
            "knn_placement_one_point": knn,
            "speedup": round(transform["median_ms"] / knn["median_ms"], 1),
            "other_thread_longest_stall_ms_during_fit": round(1000 * max(gaps), 1),
            "other_thread_stalls_over_20_ms": int(sum(g > 0.02 for g in gaps))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=96, help="frames of the bikes clip to index")
    parser.add_argument("--repeats", type=int, default=3, help="alternating build / forward-only runs")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="index sizes for the query latency")
    parser.add_argument("--dim", type=int, default=1280, help="vector dimension (lite0's last layer: 1280)")
    parser.add_argument("--dim-1m", type=int, default=256, help="dimension at 1M vectors (memory)")
    parser.add_argument("--umap-points", type=int, default=2048, help="points of the UMAP map for the transform")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: build,queries,live,umap")
    args = parser.parse_args()
    keep_freed_memory()
    skip = set(args.skip.split(","))
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine()}
    if "live" not in skip:
        report["live_pane_overhead"] = bench_live(200)
    if "umap" not in skip:
        report["umap_live_placement"] = bench_umap_placement(args.umap_points, 1280, 200)
    if "queries" not in skip:
        report["query_latency"] = bench_queries([int(s) for s in args.sizes.split(",")], args.dim, args.dim_1m)
    if "build" not in skip:
        report["index_build"] = bench_build(args.frames, args.repeats)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
