"""2-D maps of feature vectors that can place new points: PCA (scikit-learn), UMAP (umap-learn) and
t-SNE (openTSNE). scikit-learn's own t-SNE has no transform, so openTSNE is used.

    fitted = fit_map(vectors, "umap", seed=0)    # fitted.coords (N, 2)
    fitted.transform(new_vectors)                 # (M, 2) in the same map
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any, Callable

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


_epoch_progress = threading.local()  # .callback: the progress of the UMAP fit running on this thread
_epochs_installed = threading.Lock()


def _follow_umap_epochs(umap_layouts) -> None:
    """umap-learn runs its layout epochs as ``for n in tqdm(range(n_epochs), **tqdm_kwds)`` and has no
    progress callback. Its module's ``tqdm`` is replaced (once) by a loop that, on a thread whose fit
    asked for progress, reports before each epoch, so an exception from the callback stops the fit
    between two epochs; every other caller gets tqdm as before. (A callback raising inside tqdm's own
    bar writer would leave tqdm's process-wide lock held: tqdm's refresh does not release it.)"""
    with _epochs_installed:
        original = umap_layouts.tqdm
        if getattr(original, "follows_epochs", False):
            return

        def epochs(iterable, **kwds):
            callback = getattr(_epoch_progress, "callback", None)
            return original(iterable, **kwds) if callback is None else _reporting(iterable, callback)

        epochs.follows_epochs = True
        umap_layouts.tqdm = epochs


def _reporting(iterable, progress: Callable[[float], None]):
    total = max(len(iterable), 1)
    for n, item in enumerate(iterable):
        progress(n / total)
        yield item
    progress(1.0)


TSNE_EXAGGERATION_ITERATIONS = 250  # openTSNE's default early-exaggeration phase
TSNE_ITERATIONS = 500  # openTSNE's default main phase
TSNE_CALLBACK_EVERY = 10


def fit_map(vectors: np.ndarray, method: str = "pca", seed: int = 0, threads: int = 1,
            progress: Callable[[float], None] | None = None, epochs: int | None = None) -> FeatureMap:
    """Fit a 2-D map of ``vectors`` (N, D); the same seed gives the same map.

    progress(fraction in [0, 1]) follows the layout optimisation (UMAP epochs, t-SNE iterations; PCA
    has none); an exception it raises stops the fit and propagates (a cancelled background fit).
    epochs: UMAP's layout epochs / t-SNE's main-phase iterations (None: the library's default)."""
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
            if progress is not None:
                _follow_umap_epochs(importlib.import_module("umap.layouts"))
            _epoch_progress.callback = progress
            try:
                model = umap.UMAP(n_neighbors=min(15, n - 1), n_components=2, min_dist=0.1, random_state=seed,
                                  init="spectral" if n > 10 else "random", n_epochs=epochs).fit(vectors)
            finally:
                _epoch_progress.callback = None
        return FeatureMap(method, np.asarray(model.embedding_, np.float32), model)
    opentsne = _library("openTSNE")
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    iterations = TSNE_ITERATIONS if epochs is None else int(epochs)
    callbacks = None
    if progress is not None:
        total, calls = TSNE_EXAGGERATION_ITERATIONS + iterations, [0]

        def callbacks(iteration, error, embedding) -> bool:
            calls[0] += 1
            progress(min(1.0, calls[0] * TSNE_CALLBACK_EVERY / total))
            return False

    embedding = opentsne.TSNE(perplexity=perplexity, random_state=seed, n_jobs=threads, verbose=False,
                              n_iter=iterations, early_exaggeration_iter=TSNE_EXAGGERATION_ITERATIONS,
                              callbacks=callbacks, callbacks_every_iters=TSNE_CALLBACK_EVERY
                              ).fit(vectors.astype(np.float64))
    return FeatureMap(method, np.asarray(embedding, np.float32), embedding)
