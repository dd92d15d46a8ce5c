"""ONNX export with the visualisable layers as extra outputs: equivalence with torch, disk cache."""
from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch
from torch import nn

from toolbox.errors import DeepvisError
from toolbox.models.capture import forward_with_activations, has_hooks
from toolbox.models.onnx_export import LOGITS_NAME, cached_path, export_onnx, require_export_packages
from toolbox.models.onnx_runtime import OnnxSession
from toolbox.models.preprocess import IMAGENET, Preprocess
from toolbox.models.registry import LoadedModel

TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module", params=["lite0", "resnet18"])
def exported(request, lite0, random_model):
    model = lite0 if request.param == "lite0" else random_model("resnet18")
    return model, export_onnx(model)


def _inputs(model, cat_bgr) -> torch.Tensor:
    """A real photo and a noise image, batch of 2."""
    noise = np.random.default_rng(0).integers(0, 256, (model.preprocess.size,) * 2 + (3,), dtype=np.uint8)
    return model.input_tensor([model.preprocess.model_view(cat_bgr), noise])


def test_exported_logits_and_every_layer_output_equal_torch(exported, cat_bgr):
    model, path = exported
    x = _inputs(model, cat_bgr)
    outputs = OnnxSession(path, providers="cpu").run(x)
    logits, activations = forward_with_activations(model.module, x, model.layers)
    assert list(outputs) == [LOGITS_NAME, *model.layers]
    torch.testing.assert_close(outputs[LOGITS_NAME], logits, **TOLERANCE)
    for name in model.layers:
        torch.testing.assert_close(outputs[name], activations[name], **TOLERANCE, msg=lambda m: f"{name}: {m}")
    assert not has_hooks(model.module)


def test_export_takes_the_model_input_size_and_a_dynamic_batch(exported):
    model, path = exported
    (graph_input,) = OnnxSession(path, providers="cpu").session.get_inputs()
    assert graph_input.shape[1:] == [3, model.preprocess.size, model.preprocess.size]
    assert isinstance(graph_input.shape[0], str)


class Tiny(nn.Module):
    """Two conv layers and a linear head: exports in about a second."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.conv2(self.relu(self.conv1(x)))
        return self.head(x.mean(dim=(2, 3)))


def _tiny(weights_id: str = "w0", size: int = 16, seed: int = 0) -> LoadedModel:
    torch.manual_seed(seed)
    module = Tiny().eval().requires_grad_(False)
    return LoadedModel("tiny", module, Preprocess(size, IMAGENET.mean, IMAGENET.std), tuple("abcde"),
                       ["relu", "conv2"], "random", weights_id)


def _fail_if_exporting(*args, **kwargs):
    raise AssertionError("export ran although a cached graph existed")


def test_export_is_reused_from_the_cache(tmp_path, monkeypatch):
    model = _tiny()
    first = export_onnx(model, directory=tmp_path)
    stamp = first.stat().st_mtime_ns
    monkeypatch.setattr(torch.onnx, "export", _fail_if_exporting)
    assert export_onnx(_tiny(), directory=tmp_path) == first
    assert first.stat().st_mtime_ns == stamp


def test_export_cache_key_follows_model_weights_size_and_layers():
    base = _tiny()
    variants = [dataclasses.replace(base, name="tiny2"), dataclasses.replace(base, weights_id="w1"),
                dataclasses.replace(base, preprocess=Preprocess(32, IMAGENET.mean, IMAGENET.std))]
    paths = {cached_path(base, base.layers)} | {cached_path(v, v.layers) for v in variants}
    paths |= {cached_path(base, ["relu"]), cached_path(base, ["conv2", "relu"])}
    assert len(paths) == 6
    assert cached_path(base, base.layers) == cached_path(_tiny(), ["relu", "conv2"])


def test_changed_weights_regenerate_the_graph(tmp_path):
    old, new = _tiny("w0", seed=0), _tiny("w1", seed=1)
    old_path, new_path = export_onnx(old, directory=tmp_path), export_onnx(new, directory=tmp_path)
    assert old_path != new_path and old_path.is_file() and new_path.is_file()
    x = torch.randn(3, 3, 16, 16)
    with torch.inference_mode():
        expected = new.module(x)
    torch.testing.assert_close(OnnxSession(new_path, "cpu").run(x)[LOGITS_NAME], expected, **TOLERANCE)


def test_missing_export_packages_are_named_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    with pytest.raises(DeepvisError, match=r"pip install 'deepvis\[onnx\]'") as error:
        require_export_packages("dynamo")
    assert "\n" not in str(error.value)
