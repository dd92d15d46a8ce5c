"""L2 nearest neighbours over feature vectors with faiss: exact (a flat index) up to ``EXACT_LIMIT``
vectors, an HNSW graph beyond that, where exact search stops being interactive on a CPU."""
from __future__ import annotations

import numpy as np

from toolbox.cpu_threads import threads_in_use

EXACT_LIMIT = 1_000_000  # vectors; a flat L2 scan of 1M x 1280 float32 is ~0.1 s per query on 2 cores
HNSW_LINKS = 32  # neighbours per node of the HNSW graph (faiss' usual default)


def _faiss():
    try:
        import faiss
    except ImportError:
        from toolbox.errors import DeepvisError

        raise DeepvisError("nearest-neighbour search needs faiss: pip install faiss-cpu") from None
    return faiss


def search_kind(count: int, exact_limit: int = EXACT_LIMIT) -> str:
    """'exact' or 'approximate (HNSW)': the search a collection of ``count`` vectors gets."""
    return "exact" if count <= exact_limit else "approximate (HNSW)"


class VectorSearch:
    """The vectors (N, D) float32 in a faiss index; ``search`` returns L2 distances, nearest first."""

    def __init__(self, vectors: np.ndarray, exact_limit: int = EXACT_LIMIT, threads: int | None = None):
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be (N, D), not {vectors.shape}")
        threads = threads or threads_in_use()  # None: faiss' default, every core
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        self.count, self.dim = vectors.shape
        self.kind = search_kind(self.count, exact_limit)
        if self.kind == "exact":
            self._index = faiss.IndexFlatL2(self.dim)
        else:
            self._index = faiss.IndexHNSWFlat(self.dim, HNSW_LINKS)
            self._index.hnsw.efSearch = 64
        self._index.add(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries (Q, D) -> (distances (Q, k') float32 L2, ids (Q, k') int64), k' = min(k, N)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(int(k), self.count)
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        squared, ids = self._index.search(queries, k)
        return np.sqrt(np.maximum(squared, 0.0)), ids
