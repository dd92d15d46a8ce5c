"""Latent space: frames as pooled feature vectors, their nearest neighbours, 2-D maps of them, and
concept activation vectors (TCAV).

    features.py  (N, C, H, W) activations -> (N, C) vectors (mean or max pooling)
    search.py    exact / approximate L2 nearest neighbours (faiss)
    memory.py    a rolling memory of recent frames' vectors, near-duplicates skipped (the live pane)
    maps.py      PCA / UMAP / openTSNE maps with a transform for new points
    concepts.py  CAVs and TCAV scores through captum.concept, with the paper's significance test
"""
