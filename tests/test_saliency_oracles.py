"""Our maps equal captum's on random-weight torchvision models (same model, input and target),
and a reference network rewritten with explicit rectifier functions where captum does nothing
(ReLU6, functional ReLU)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

captum_attr = pytest.importorskip("captum.attr")

from toolbox.analysis.saliency import saliency_map  # noqa: E402
from toolbox.models.capture import has_hooks  # noqa: E402

SIZE = 64
TARGET = 7
GRADCAM_LAYERS = {"resnet18": "layer4.1", "vgg11": "features.18", "googlenet": "inception5b"}
# vgg11 features.18 is a conv followed by ReLU(inplace=True): the in-place trap for Grad-CAM.


def assert_relative(ours: torch.Tensor, reference: torch.Tensor, tol: float = 1e-5):
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = reference.abs().max()
    assert scale > 0, "reference map is all zeros: the comparison would prove nothing"
    error = float((ours - reference).detach().abs().max() / scale)
    assert error <= tol, f"max relative difference {error:.3g} > {tol}"


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "googlenet"])
def test_gradient_methods_equal_captum(random_model, image, name):
    model = random_model(name).module
    cases = {
        "gradient": captum_attr.Saliency(model).attribute(image, target=TARGET, abs=False),
        "input_x_gradient": captum_attr.InputXGradient(model).attribute(image, target=TARGET),
        "gradcam": captum_attr.LayerGradCam(model, model.get_submodule(GRADCAM_LAYERS[name])).attribute(
            image, target=TARGET, relu_attributions=False)[0, 0],
        "integrated_gradients": captum_attr.IntegratedGradients(model).attribute(
            image, target=TARGET, n_steps=4, method="gausslegendre"),
    }
    if name != "googlenet":  # googlenet rectifies with F.relu, which captum skips (see the reference test)
        cases["guided"] = captum_attr.GuidedBackprop(model).attribute(image, target=TARGET)
        cases["deconvnet"] = captum_attr.Deconvolution(model).attribute(image, target=TARGET)
        cases["guided_gradcam"] = captum_attr.GuidedGradCam(model, model.get_submodule(GRADCAM_LAYERS[name])).attribute(
            image, target=TARGET)
    for method, reference in cases.items():
        options = {"steps": 4, "batch_size": 4} if method == "integrated_gradients" else {}
        options |= {"relu": False} if method == "gradcam" else {}
        ours = saliency_map(model, image, method, TARGET, layer=GRADCAM_LAYERS[name], **options)
        assert_relative(ours, reference[0] if reference.dim() == 4 else reference)
    assert not has_hooks(model) and all(p.grad is None and not p.requires_grad for p in model.parameters())


@pytest.fixture(scope="module")
def bench_saliency():
    """scripts/bench_saliency.py, whose captum references must compute our maps (like for like)."""
    path = Path(__file__).resolve().parent.parent / "scripts" / "bench_saliency.py"
    spec = importlib.util.spec_from_file_location("bench_saliency", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["lite0", "resnet18", "vgg11_bn"])
def test_guided_backprop_equals_captum_where_captum_sees_every_rectifier(lite0, random_model, bench_saliency, name):
    """captum hooks only nn.ReLU modules; on lite0 the benchmark's copy shows it each ReLU6 as one."""
    model = (lite0 if name == "lite0" else random_model(name)).module
    visible = bench_saliency.with_relu6_replaced(model)
    if name == "lite0":
        assert not any(isinstance(m, nn.ReLU6) for m in visible.modules())
        assert sum(isinstance(m, nn.ReLU) for m in visible.modules()) == 33
    x = torch.randn(1, 3, 80, 80, generator=torch.Generator().manual_seed(4))
    reference = captum_attr.GuidedBackprop(visible).attribute(x, target=TARGET)[0]
    ours = saliency_map(model, x, "guided", TARGET)
    assert_relative(ours, reference, tol=1e-6)
    plain = saliency_map(model, x, "gradient", TARGET)  # and the rule was applied, by both
    assert float((plain - reference).abs().max() / reference.abs().max()) > 0.1


@pytest.mark.parametrize("name", ["resnet18", "vgg11"])
def test_occlusion_equals_captum_with_cropped_last_window(random_model, image, name):
    model = random_model(name).module
    reference = captum_attr.Occlusion(model).attribute(image, sliding_window_shapes=(3, 20, 20), strides=(3, 14, 14),
                                                       baselines=0.25, target=TARGET, perturbations_per_eval=16)
    ours = saliency_map(model, image, "occlusion", TARGET, window=20, stride=14, baseline=0.25, batch_size=16)
    for channel in range(3):  # ours runs BatchNorm folded and channels-last: other float rounding
        assert_relative(ours, reference[0, channel], 1e-4)


def test_smoothgrad_equals_captum_noise_tunnel_with_same_noise(random_model, image, run_recording_noise):
    model = random_model("resnet18").module
    reference, noise = run_recording_noise(lambda: captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(
        image, nt_type="smoothgrad", nt_samples=6, stdevs=0.3, target=TARGET, abs=False))
    ours = saliency_map(model, image, "smoothgrad", TARGET, noise=noise, batch_size=4)
    assert_relative(ours, reference[0])


class _ReferenceRectifier(torch.autograd.Function):
    """ReLU whose backward is written out per method: the oracle for rectifiers captum skips."""

    @staticmethod
    def forward(ctx, x, rule):
        ctx.save_for_backward(x)
        ctx.rule = rule
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.rule == "deconv":
            return grad.clamp_min(0), None
        if ctx.rule == "guided":
            grad = grad.clamp_min(0)
        return grad * (x > 0), None


class _ExplicitReLU6(nn.Module):
    """ReLU6 rewritten as an explicit rectifier followed by a clip at 6 with its ordinary gradient."""

    def __init__(self, rule):
        super().__init__()
        self.rule = rule

    def forward(self, x):
        return _ReferenceRectifier.apply(x, self.rule).clamp(max=6.0)


def _reference_input_gradient(model, x, target):
    x = x.clone().requires_grad_()
    return torch.autograd.grad(model(x)[0, target], x)[0][0]


@pytest.mark.parametrize("method,rule", [("guided", "guided"), ("deconvnet", "deconv"), ("gradient", "plain")])
def test_relu6_lite0_equals_explicitly_rewritten_network(lite0, bench_saliency, method, rule):
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(2)) * 0.8
    rewritten = bench_saliency.with_relu6_replaced(lite0.module, lambda relu6: _ExplicitReLU6(rule))
    reference = _reference_input_gradient(rewritten, x, TARGET)
    assert_relative(saliency_map(lite0, x, method, TARGET), reference)
    if rule != "plain":  # and it is not the plain gradient that captum returns on ReLU6
        plain = saliency_map(lite0, x, "gradient", TARGET)
        assert float((plain - reference).abs().max() / reference.abs().max()) > 0.1


@pytest.mark.parametrize("method,rule", [("guided", "guided"), ("deconvnet", "deconv")])
def test_functional_relu_googlenet_equals_explicitly_rewritten_network(random_model, image, monkeypatch, method, rule):
    model = random_model("googlenet").module
    ours = saliency_map(model, image, method, TARGET)
    # googlenet's BasicConv2d calls F.relu(x, inplace=True): rewrite that call as an explicit rectifier
    monkeypatch.setattr(F, "relu", lambda x, inplace=False: _ReferenceRectifier.apply(x, rule))
    reference = _reference_input_gradient(model, image, TARGET)
    monkeypatch.undo()
    assert_relative(ours, reference)
    plain = saliency_map(model, image, "gradient", TARGET)
    assert float((plain - reference).abs().max() / reference.abs().max()) > 0.1
