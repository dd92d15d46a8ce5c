"""Model registry, bundled lite0 weights, layers and activation capture."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from toolbox.analysis.activations import top_predictions
from toolbox.analysis.frame_analysis import FrameAnalyser
from toolbox.errors import DeepvisError
from toolbox.models import ActivationCapture, load_model
from toolbox.models.capture import has_hooks
from toolbox.models.registry import TORCHVISION_MODELS
from toolbox.sources import Frame

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def predict(model, image_bgr, k=5):
    x = model.preprocess(image_bgr)
    with torch.inference_mode():
        return top_predictions(model.module(x)[0], model.categories, k)


def test_lite0_says_the_cat_is_a_cat(lite0, cat_bgr):
    top = predict(lite0, cat_bgr)
    assert top[0].index in CAT_CLASSES, top
    assert top[0].label == "Egyptian cat"
    assert sum(p.probability for p in top if p.index in CAT_CLASSES) > 0.8


def test_lite0_says_the_coffee_is_espresso_or_a_cup(lite0, coffee_bgr):
    top = predict(lite0, coffee_bgr)
    assert top[0].label in {"espresso", "cup", "coffee mug"}, top
    assert top[0].probability > 0.5


def test_lite0_visualisable_layers_go_from_stem_to_head(lite0):
    infos = lite0.layer_infos()
    assert [i.name for i in infos] == ["_relu0", *(f"_blocks.{i}" for i in range(16)), "_relu1"]
    assert infos[0].shape == (32, 112, 112)
    assert infos[-1].shape == (1280, 7, 7)
    assert all(i.type for i in infos)


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_torchvision_models_build_with_random_weights_and_list_layers(name, random_model):
    model = random_model(name)
    infos = model.layer_infos()
    assert 5 <= len(infos) <= 20
    assert all(len(i.shape) == 3 and i.channels > 0 for i in infos)
    size = model.preprocess.size
    assert size == (299 if name == "inception_v3" else 224)
    with torch.inference_mode():
        assert model.module(torch.zeros(1, 3, size, size)).shape == (1, 1000)


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(DeepvisError, match="unknown model 'nosuchnet'") as info:
        load_model("nosuchnet")
    assert "\n" not in str(info.value)


def test_missing_torchvision_weights_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(DeepvisError, match="no weights for resnet18") as info:
        load_model("resnet18")
    message = str(info.value)
    assert "--weights PATH" in message and "--weights none" in message and "\n" not in message


def test_weights_file_path_is_loaded_and_hashed(tmp_path, random_model):
    model = random_model("resnet18")
    path = tmp_path / "r18.pth"
    torch.save(model.module.state_dict(), path)
    loaded = load_model("resnet18", weights=str(path))
    assert loaded.weights_id == model.weights_id
    assert loaded.weights == str(path)


def test_weights_that_do_not_fit_are_a_one_line_error(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(DeepvisError, match="do not fit model resnet18"):
        load_model("resnet18", weights=str(path))


def test_unknown_layer_is_a_one_line_error(lite0):
    with pytest.raises(DeepvisError, match="unknown layer '_blocks.99'"):
        ActivationCapture(lite0.module, ["_blocks.99"])


def test_capture_removes_its_hooks_even_on_error(lite0):
    with pytest.raises(RuntimeError):
        with ActivationCapture(lite0.module, lite0.layers):
            assert has_hooks(lite0.module)
            lite0.module(torch.zeros(1, 5, 8, 8))  # wrong channel count
    assert not has_hooks(lite0.module)


def test_frame_analyser_leaves_no_hooks(lite0, cat_bgr):
    with FrameAnalyser(lite0) as analyser:
        result = analyser(Frame(cat_bgr, 0, 0.0))
    assert not has_hooks(lite0.module)
    assert set(result.activations) == set(lite0.layers)
    assert result.view.shape == (224, 224, 3)


def test_captured_activations_are_clones_safe_from_inplace_ops(random_model):
    # vgg11's ReLUs are in place: features.1 rectifies features.0's output tensor itself.
    model = random_model("vgg11")
    x = torch.randn(1, 3, 64, 64)
    with ActivationCapture(model.module, ["features.0", "features.1"]) as capture, torch.inference_mode():
        model.module.features(x)
    conv_out, relu_out = capture.activations["features.0"], capture.activations["features.1"]
    assert (conv_out < 0).any(), "the conv output was clobbered by the in-place ReLU that followed it"
    assert torch.equal(relu_out, conv_out.clamp_min(0))


def test_channels_last_gives_the_same_logits(cat_bgr):
    plain = load_model("lite0")
    fast = load_model("lite0", channels_last=True)
    with torch.inference_mode():
        a = plain.module(plain.input_tensor(plain.preprocess.model_view(cat_bgr)))
        b = fast.module(fast.input_tensor(fast.preprocess.model_view(cat_bgr)))
    assert torch.allclose(a, b, atol=1e-4)


def test_gated_capture_ignores_forwards_from_other_threads(lite0):
    import threading

    x = torch.zeros(1, 3, 64, 64)
    with ActivationCapture(lite0.module, ["_blocks.2"], gated=True) as capture:
        with torch.inference_mode():
            lite0.module(x)  # outside recording(): ignored
        assert capture.activations == {}
        with capture.recording(), torch.inference_mode():
            lite0.module(x)
        mine = capture.activations["_blocks.2"].clone()

        def background():
            with torch.inference_mode():
                lite0.module(torch.randn(1, 3, 64, 64))

        with capture.recording():  # recording on this thread does not open the gate for others
            worker = threading.Thread(target=background)
            worker.start()
            worker.join()
        assert torch.equal(capture.activations["_blocks.2"], mine)


def test_lite0_start_up_does_not_import_torchvision():
    # torchvision's import costs over a second (it pulls in torch._dynamo); lite0 needs none of it.
    code = ("import sys; from toolbox.models import load_model; m = load_model('lite0'); "
            "print(m.categories[285], 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[0] == "Egyptian cat False"
