"""Shared fixtures. Models are loaded once per test session (they are read-only: eval, frozen)."""
from __future__ import annotations

import os
import tempfile

import toolbox  # noqa: F401  before torch: its OpenMP threads wait passively (toolbox.cpu_threads)

import numpy as np
import pytest
import skimage.data
import torch

from toolbox.models import load_model

torch.set_num_threads(2)

# Caches (ONNX exports, unit images, backend choice) go to a fresh folder per test run, never to the
# user's ~/.cache; subprocesses (the live app under Xvfb) inherit it.
os.environ["DEEPVIS_CACHE"] = tempfile.mkdtemp(prefix="deepvis-test-cache-")


@pytest.fixture(scope="session")
def lite0():
    """EfficientNet-Lite0 with its real bundled ImageNet weights, on CPU."""
    return load_model("lite0")


@pytest.fixture(scope="session")
def cat_bgr() -> np.ndarray:
    """skimage's chelsea (a cat photo) as (H, W, 3) uint8 BGR."""
    return np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1])


@pytest.fixture(scope="session")
def coffee_bgr() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.coffee()[:, :, ::-1])


@pytest.fixture(scope="session")
def random_model():
    """Factory for torchvision models with seeded random weights (cached per name)."""
    cache: dict[str, object] = {}

    def make(name: str):
        if name not in cache:
            cache[name] = load_model(name, weights="none")
        return cache[name]

    return make


@pytest.fixture(scope="module")
def trainable_random_model(random_model):
    """Factory for trainable copies of ``random_model(name).module`` (cached per name and module):
    pytorch-grad-cam refuses frozen models, and the shared models stay frozen."""
    import copy

    cache: dict[str, torch.nn.Module] = {}

    def make(name: str) -> torch.nn.Module:
        if name not in cache:
            cache[name] = copy.deepcopy(random_model(name).module).requires_grad_(True)
        return cache[name]

    return make


@pytest.fixture
def run_recording_noise(monkeypatch):
    """``run_recording_noise(run)`` -> (run(), every ``torch.normal`` draw made during it, concatenated):
    the noise captum's NoiseTunnel drew, to hand the same noise to ours."""

    def record(run):
        drawn = []
        normal = torch.normal

        def recording_normal(*args, **kwargs):
            drawn.append(normal(*args, **kwargs))
            return drawn[-1]

        monkeypatch.setattr(torch, "normal", recording_normal)
        try:
            return run(), torch.cat(drawn)
        finally:
            monkeypatch.undo()

    return record


@pytest.fixture(scope="module")
def xvfb():
    """A private X server for the GUI tests of one module. Skipped, with the reason, where Xvfb,
    xdotool or ImageMagick are missing; a failure in CI, which must run them."""
    from gui_harness import Xvfb, missing_tools

    missing = missing_tools()
    if missing:
        message = f"GUI tests need {', '.join(missing)} (apt-get install xvfb xdotool imagemagick)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = Xvfb()
    yield server
    server.close()


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory):
    """A feature index of bikes + carphone (every 10th frame) at lite0's last layer, built once."""
    from toolbox.config import load_config
    from toolbox.jobs.index import build_index
    from toolbox.jobs.index_store import load_index

    folder = tmp_path_factory.mktemp("index") / "idx"
    build_index(["bikes", "carphone"], folder, load_config(), every=10, progress=False)
    return load_index(folder)


@pytest.fixture(scope="session")
def tiny_onnx_graph(tmp_path_factory):
    """(path, module): a conv + pooling graph with a dynamic batch and two outputs ("scores" (N, 4),
    "features" (N, 4, 8, 8) for an (N, 3, 8, 8) input "x"), exported with the fast legacy exporter."""
    import warnings

    from torch import nn

    path = tmp_path_factory.mktemp("ort") / "tiny.onnx"

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            features = self.conv(x).relu()
            return features.mean(dim=(2, 3)), features

    torch.manual_seed(0)
    module = TwoOutputs().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False, input_names=["x"],
                          output_names=["scores", "features"],
                          dynamic_axes={"x": {0: "n"}, "scores": {0: "n"}, "features": {0: "n"}})
    return path, module
