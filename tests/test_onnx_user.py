"""A user's own .onnx classifier: loading, layers, gradient-free saliency, one-line errors."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from toolbox.analysis.backend_choice import make_frame_analyser
from toolbox.analysis.onnx_frame_analysis import OnnxFrameAnalyser
from toolbox.analysis.rise import rise_masks, rise_saliency
from toolbox.analysis.saliency.perturbation import occlusion
from toolbox.cli import main
from toolbox.errors import DeepvisError
from toolbox.models import load_model
from toolbox.models.labels import imagenet_categories

SIZE = 64  # small input: the properties hold at any size, and occlusion stays cheap


def _export(module: nn.Module, path, example: torch.Tensor, dynamic_axes: dict | None = None, dynamo: bool = False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (example,), str(path), dynamo=True, input_names=["image"], output_names=["scores"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False)
        else:
            torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["image"],
                              output_names=["scores"], dynamic_axes=dynamic_axes)
    return path


@pytest.fixture(scope="module")
def resnet(random_model):
    """torchvision resnet18 with seeded random weights (the torch reference)."""
    return random_model("resnet18")


@pytest.fixture(scope="module")
def user_onnx(tmp_path_factory, resnet):
    """The same resnet18 exported by a user as a plain classifier (no extra outputs), dynamic batch."""
    return _export(resnet.module, tmp_path_factory.mktemp("user") / "resnet18.onnx",
                   torch.zeros(2, 3, SIZE, SIZE), dynamo=True)


@pytest.fixture(scope="module")
def user_model(user_onnx):
    return load_model(str(user_onnx))


def _input(model, image) -> torch.Tensor:
    return model.input_tensor(model.preprocess.model_view(image))


def test_user_model_lists_its_4d_feature_maps_as_layers_shallow_to_deep(user_model):
    assert user_model.module is None and user_model.onnx is not None
    assert user_model.preprocess.size == SIZE and user_model.categories == imagenet_categories()
    infos = user_model.layer_infos()
    assert [i.name for i in infos] == user_model.layers and len(infos) >= 17  # 17 convolutions at least
    assert all(len(i.shape) == 3 and i.shape[1] * i.shape[2] > 1 for i in infos)
    assert infos[0].shape == (64, SIZE // 2, SIZE // 2) and infos[-1].shape == (512, SIZE // 32, SIZE // 32)
    assert {"Relu", "Add"} <= {i.type for i in infos}
    sides = [i.shape[1] for i in infos]
    assert sides == sorted(sides, reverse=True)


def test_user_model_frames_give_torch_logits_and_layer_maps(user_model, resnet, cat_bgr):
    from toolbox.sources.frame import Frame

    layers = [user_model.layers[1], user_model.layers[-1]]
    with make_frame_analyser(user_model, layers, backend="torch") as analyser:
        assert isinstance(analyser, OnnxFrameAnalyser) and not analyser.supports_gradients
        assert "gradients" in analyser.gradients_unavailable
        result = analyser(Frame(cat_bgr, 0, 0.0))
    with torch.inference_mode():
        expected = resnet.module(_input(user_model, cat_bgr))[0]
    torch.testing.assert_close(result.logits, expected, rtol=1e-4, atol=1e-4)
    assert list(result.activations) == layers
    assert tuple(result.activations[layers[-1]].shape) == user_model.onnx.layer_shapes[layers[-1]]


def test_occlusion_through_onnxruntime_equals_occlusion_through_torch(user_model, resnet, cat_bgr):
    x = _input(user_model, cat_bgr)
    analyser = OnnxFrameAnalyser(user_model, user_model.layers[:1], providers="cpu")
    through_onnx = occlusion(analyser.forward_logits, x, target=281, window=16, stride=8)
    through_torch = occlusion(resnet.module, x, target=281, window=16, stride=8)
    assert through_onnx.shape == (SIZE, SIZE)
    torch.testing.assert_close(through_onnx, through_torch, rtol=1e-4, atol=1e-4)


def test_rise_through_onnxruntime_equals_rise_through_torch(user_model, resnet, cat_bgr):
    x = _input(user_model, cat_bgr)
    masks = rise_masks(48, SIZE, cells=4, seed=0)
    analyser = OnnxFrameAnalyser(user_model, user_model.layers[:1], providers="cpu")
    through_onnx = rise_saliency(analyser.forward_logits, x, target=281, masks=masks, batch_size=16)
    through_torch = rise_saliency(resnet.module, x, target=281, masks=masks, batch_size=16)
    torch.testing.assert_close(through_onnx, through_torch, rtol=1e-4, atol=1e-5)


def test_labels_file_names_the_classes_and_must_match_the_score_count(user_onnx, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing {i}\n" for i in range(1000)))
    assert load_model(str(user_onnx), labels=str(labels)).categories[7] == "thing 7"
    labels.write_text("cat\ndog\n")
    with pytest.raises(DeepvisError, match="has 2 names but the model gives 1000 scores"):
        load_model(str(user_onnx), labels=str(labels))


def test_deepvis_layers_lists_a_user_graph(user_onnx, user_model, capsys):
    assert main(["layers", "--model", str(user_onnx)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in user_model.layers) and f"input {SIZE}x{SIZE}" in out


class Flat(nn.Module):
    def forward(self, x):
        return x * 2


class SmallConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x).relu().mean(dim=(2, 3))


def _one_line_error(path, match: str, **kwargs) -> str:
    with pytest.raises(DeepvisError, match=match) as error:
        load_model(str(path), **kwargs)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_file_that_is_not_onnx_is_a_one_line_error(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a protobuf\n" * 10)
    _one_line_error(bad, "is not an ONNX model")
    _one_line_error(tmp_path / "missing.onnx", "ONNX file not found")


def test_wrong_input_rank_is_a_one_line_error(tmp_path):
    path = _export(Flat(), tmp_path / "flat.onnx", torch.zeros(1, 10))
    _one_line_error(path, r"has rank 2: deepvis needs \(N, 3, H, W\) images")


def test_dynamic_height_and_width_need_a_preprocess_config(tmp_path):
    path = _export(SmallConv().eval(), tmp_path / "dynamic.onnx", torch.zeros(1, 3, 16, 16),
                   dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "scores": {0: "n"}})
    _one_line_error(path, "dynamic input height or width: give the size in a --preprocess")
    config = tmp_path / "pre.yaml"
    config.write_text("size: 24\nmean: [0.5, 0.5, 0.5]\nstd: [0.25, 0.25, 0.25]\n")
    model = load_model(str(path), preprocess=str(config))
    assert model.preprocess.size == 24 and model.preprocess.mean == (0.5, 0.5, 0.5)
    assert model.layer_infos()[-1].shape == (4, 24, 24) and model.categories[:2] == ("class 0", "class 1")
    config.write_text("size: 24\ncolour: rgb\n")
    _one_line_error(path, "unknown key 'colour'", preprocess=str(config))


def test_a_graph_with_a_fixed_batch_of_one_still_takes_batches(tmp_path, cat_bgr):
    torch.manual_seed(0)
    module = SmallConv().eval()
    path = _export(module, tmp_path / "fixed.onnx", torch.zeros(1, 3, 16, 16))
    model = load_model(str(path))
    assert not model.onnx.batch_dynamic
    x = torch.randn(3, 3, 16, 16)
    with torch.inference_mode():
        expected = module(x)
    logits = OnnxFrameAnalyser(model, providers="cpu").forward_logits(x)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_analyze_job_runs_on_a_user_graph(user_onnx, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", "demo", "--out", str(out), "--model", str(user_onnx), "--every", "60", "--quiet"]) == 0
    summary = (out / "summary.json").read_text()
    assert '"model": "resnet18.onnx"' in summary and '"backend": "onnx CPU' in summary
