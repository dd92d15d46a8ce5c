"""2-D maps of feature vectors that can place new points: PCA (scikit-learn), UMAP (umap-learn) and
t-SNE (openTSNE). scikit-learn's own t-SNE has no transform, so openTSNE is used.

    fitted = fit_map(vectors, "umap", seed=0)    # fitted.coords (N, 2)
    fitted.transform(new_vectors)                 # (M, 2) in the same map
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("pca", "umap", "tsne")
EXTRA = "pip install 'deepvis[latent]' (umap-learn, openTSNE, captum, matplotlib)"


@dataclass
class FeatureMap:
    """A fitted map. coords (N, 2) float32 of the fitted vectors; ``model`` the library's object."""

    method: str
    coords: np.ndarray
    model: Any

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """(M, D) -> (M, 2) float32: new points placed by the fitted model (PCA: the exact projection;
        UMAP and openTSNE: optimised against the fixed map from their neighbours' positions)."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if self.method == "tsne":
            return np.asarray(self.model.transform(vectors.astype(np.float64)), np.float32)
        return np.asarray(self.model.transform(vectors), np.float32)


def _library(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        from toolbox.errors import DeepvisError

        raise DeepvisError(f"this map needs the {name} package: {EXTRA}") from None


def fit_map(vectors: np.ndarray, method: str = "pca", seed: int = 0, threads: int = 1) -> FeatureMap:
    """Fit a 2-D map of ``vectors`` (N, D); the same seed gives the same map."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if n < 3:
        from toolbox.errors import DeepvisError

        raise DeepvisError(f"a map needs at least 3 vectors, the index holds {n}: index more frames")
    if method == "pca":
        from sklearn.decomposition import PCA

        model = PCA(n_components=2, svd_solver="full", random_state=seed).fit(vectors)
        return FeatureMap(method, model.transform(vectors).astype(np.float32), model)
    if method == "umap":
        umap = _library("umap")
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*random_state.*")  # "n_jobs overridden": wanted, for a seed
            model = umap.UMAP(n_neighbors=min(15, n - 1), n_components=2, min_dist=0.1, random_state=seed,
                              init="spectral" if n > 10 else "random").fit(vectors)
        return FeatureMap(method, np.asarray(model.embedding_, np.float32), model)
    opentsne = _library("openTSNE")
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    embedding = opentsne.TSNE(perplexity=perplexity, random_state=seed, n_jobs=threads, verbose=False
                              ).fit(vectors.astype(np.float64))
    return FeatureMap(method, np.asarray(embedding, np.float32), embedding)
