"""Placing new points on a fitted 2-D map by their nearest neighbours in feature space: the position
is the inverse-distance weighted mean of the map positions of the k nearest fitted vectors,

    p(q) = sum_i w_i c_i / sum_i w_i,   w_i = 1 / d(q, x_i)   over the k nearest x_i,

and a query at distance zero from fitted vectors lands on (the mean of) their positions. It costs one
k-NN search (faiss) and a weighted mean, so a UMAP or t-SNE map can follow a live frame at frame rate,
where their own transforms optimise each new point for 10-400 ms. Unlike those transforms it never
moves a point away from its neighbours' positions: it interpolates, and says where the frame's nearest
fitted frames lie, not where a refit would put it.

    placement = NeighbourPlacement(fitted_vectors, fitted.coords, k=8)
    placement.place(new_vectors)   # (M, 2) float32
"""
from __future__ import annotations

import numpy as np

from toolbox.analysis.latent.search import VectorSearch

DEFAULT_K = 8


def knn_placement(distances: np.ndarray, ids: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """(M, 2) float32 positions from each query's neighbours: ``distances`` (M, k) L2 >= 0 and ``ids``
    (M, k) rows of ``coords`` (N, 2); ids < 0 (faiss' "no neighbour") are ignored. Weights 1/d; where
    a query has neighbours at distance 0, only those count (equally)."""
    distances = np.asarray(distances, np.float64)
    ids = np.asarray(ids)
    valid = ids >= 0
    if not valid.any(axis=1).all():
        raise ValueError("every query needs at least one neighbour")
    exact = valid & (distances <= 0.0)
    with np.errstate(divide="ignore"):
        inverse = np.where(valid & ~exact, 1.0 / np.where(distances > 0, distances, 1.0), 0.0)
    weights = np.where(exact.any(axis=1, keepdims=True), exact.astype(np.float64), inverse)
    positions = np.asarray(coords, np.float64)[np.where(valid, ids, 0)]  # (M, k, 2)
    return ((weights[..., None] * positions).sum(1) / weights.sum(1, keepdims=True)).astype(np.float32)


class NeighbourPlacement:
    """The fitted vectors (N, D) in a faiss index with their map positions (N, 2)."""

    def __init__(self, vectors: np.ndarray, coords: np.ndarray, k: int = DEFAULT_K, threads: int = 1):
        if len(vectors) != len(coords):
            raise ValueError(f"{len(vectors)} vectors but {len(coords)} map positions")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.coords = np.asarray(coords, np.float32)
        self.k = min(int(k), len(vectors))
        self.search = VectorSearch(self.vectors, threads=threads)  # one query per frame: more threads only wait

    def place(self, vectors: np.ndarray) -> np.ndarray:
        """(M, D) or (D,) -> (M, 2) float32 map positions."""
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        _, ids = self.search.search(queries, self.k)
        # the k distances again as norms of differences: faiss' |q|^2 + |x|^2 - 2 q.x leaves a rounding
        # residue where q is a fitted vector, and an exact zero puts it on its own map position
        found = self.vectors[np.where(ids >= 0, ids, 0)]
        distances = np.linalg.norm(found - queries[:, None, :], axis=2)
        return knn_placement(distances, ids, self.coords)
