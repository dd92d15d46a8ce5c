"""LRP equals zennit, the noise tunnel equals captum's NoiseTunnel, Score-CAM, Ablation-CAM and
FullGrad equal pytorch-grad-cam: same random-weight model, input and target, three architectures."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

zennit_attribution = pytest.importorskip("zennit.attribution")
captum_attr = pytest.importorskip("captum.attr")
gc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from test_saliency_cams import UnitScore, assert_relative, most_active_channel  # noqa: E402
from zennit.canonizers import NamedMergeBatchNorm, SequentialMergeBatchNorm  # noqa: E402
from zennit.torchvision import ResNetCanonizer, VGGCanonizer  # noqa: E402

from toolbox.analysis.saliency import UnitTarget, saliency_map  # noqa: E402
from toolbox.analysis.saliency.lrp import batch_norm_pairs, make_composite  # noqa: E402
from toolbox.models.capture import has_hooks  # noqa: E402

SIZE = 64
CLASS = 7


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))


def zennit_relevance(model: nn.Module, x: torch.Tensor, method: str, canonizer, index: int = CLASS) -> torch.Tensor:
    """zennit's relevance with its own canonizer, starting from the target logit (one-hot x output)."""
    composite = make_composite(method, canonizers=[canonizer])
    with zennit_attribution.Gradient(model, composite) as attributor:
        output, relevance = attributor(x, lambda out: torch.eye(out.shape[1])[[index]] * out)
    return relevance[0]


# zennit's canonizer per architecture: ResNet's adds a Sum module for the residual additions.
LRP_CASES = [("resnet18", ResNetCanonizer, "lrp_epsilon_plus_flat"), ("vgg11_bn", VGGCanonizer, "lrp_alpha2_beta1"),
             ("googlenet", SequentialMergeBatchNorm, "lrp_epsilon")]


@pytest.mark.parametrize("name,canonizer,method", LRP_CASES)
def test_lrp_equals_zennit_with_its_canonizers(random_model, image, name, canonizer, method):
    model = random_model(name).module
    ours = saliency_map(model, image, method, CLASS)
    assert_relative(ours, zennit_relevance(model, image, method, canonizer()), 1e-5)
    assert not has_hooks(model)


def test_lrp_of_a_unit_equals_zennit(random_model, image):
    model = random_model("resnet18").module
    channel = most_active_channel(model, image, "layer4.0")
    ours = saliency_map(model, image, "lrp_epsilon", UnitTarget("layer4.0", channel))
    scored = UnitScore(copy.deepcopy(model), "layer4.0", channel)
    reference = zennit_relevance(scored, image, "lrp_epsilon", ResNetCanonizer(), index=0)
    assert_relative(ours, reference, 1e-5)


def test_batch_norms_are_folded_into_the_convolution_that_feeds_them(random_model):
    """Traced, not by module order: zennit's SequentialMergeBatchNorm pairs a DenseNet layer's last
    convolution with the next layer's BatchNorm, which reads a concatenation (and fails)."""
    model = random_model("densenet121").module
    pairs = set(batch_norm_pairs(model, torch.zeros(1, 3, SIZE, SIZE)))
    expected = {("features.conv0", "features.norm0")}
    expected |= {(f"{n}.conv1", f"{n}.norm2") for n, m in model.named_modules() if type(m).__name__ == "_DenseLayer"}
    assert pairs == expected
    with pytest.raises(RuntimeError):  # the module-order canonizer gets it wrong (and leaves a copy half-merged)
        zennit_relevance(copy.deepcopy(model), torch.zeros(1, 3, SIZE, SIZE), "lrp_epsilon", SequentialMergeBatchNorm())
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    ours = saliency_map(model, x, "lrp_epsilon", CLASS)
    reference = zennit_relevance(model, x, "lrp_epsilon", NamedMergeBatchNorm([((a,), b) for a, b in sorted(expected)]))
    assert_relative(ours, reference, 1e-5)


@pytest.fixture(scope="module")
def bias_free_resnet(random_model):
    """resnet18 whose every bias is 0 (folded BatchNorm biases are 0 at initialisation; the fc bias
    is zeroed): relevance must then be conserved exactly."""
    model = copy.deepcopy(random_model("resnet18").module)
    model.fc.bias.data.zero_()
    return model


@pytest.mark.parametrize("method", ["lrp_epsilon", "lrp_epsilon_plus_flat", "lrp_alpha2_beta1"])
def test_lrp_relevance_sums_to_the_target_logit(bias_free_resnet, image, method):
    logit = float(bias_free_resnet(image)[0, CLASS])
    relevance = saliency_map(bias_free_resnet, image, method, CLASS, **({"epsilon": 1e-9} if "epsilon" in method else {}))
    assert abs(float(relevance.sum()) - logit) <= 1e-3 * abs(logit), (float(relevance.sum()), logit)


def test_lrp_epsilon_to_zero_is_gradient_times_input_on_a_bias_free_relu_network(bias_free_resnet, image):
    """LRP-0 equals gradient x input on piecewise-linear bias-free networks (Ancona et al. 2018)."""
    ours = saliency_map(bias_free_resnet, image, "lrp_epsilon", CLASS, epsilon=1e-9)
    assert_relative(ours, saliency_map(bias_free_resnet, image, "input_x_gradient", CLASS), 1e-3)


def test_lrp_passes_relevance_through_saturated_relu6():
    """A unit clipped at 6 has zero gradient; ReLU6 passes its relevance on instead."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU6(), nn.Flatten(), nn.Linear(2, 1, bias=False)).eval()
    model[0].weight.data.fill_(1.0)
    model[3].weight.data.fill_(1.0)
    x = torch.tensor([[[[10.0, 2.0]]]])  # conv output 10 saturates at 6, 2 does not
    relevance = saliency_map(model, x, "lrp_epsilon", 0, epsilon=1e-9)[0, 0]
    torch.testing.assert_close(relevance, torch.tensor([6.0, 2.0]), atol=1e-5, rtol=0)  # sums to the logit, 8
    assert float(saliency_map(model, x, "gradient", 0)[0, 0, 0]) == 0.0


# --- noise tunnel -------------------------------------------------------------------------------

NT_TYPES = {"smoothgrad": "smoothgrad", "squaregrad": "smoothgrad_sq", "vargrad": "vargrad"}


@pytest.mark.parametrize("name,base", [("resnet18", "gradient"), ("vgg11_bn", "guided"),
                                       ("mobilenet_v3_large", "input_x_gradient")])
def test_noise_tunnels_equal_captum_with_the_same_noise(random_model, image, run_recording_noise, name, base):
    model = random_model(name).module
    methods = {"gradient": lambda: captum_attr.Saliency(model), "guided": lambda: captum_attr.GuidedBackprop(model),
               "input_x_gradient": lambda: captum_attr.InputXGradient(model)}
    extra = {"abs": False} if base == "gradient" else {}
    for ours_name, nt_type in NT_TYPES.items():
        reference, noise = run_recording_noise(lambda: captum_attr.NoiseTunnel(
            methods[base]()).attribute(image, nt_type=nt_type, nt_samples=4, stdevs=0.3, target=CLASS, **extra))
        ours = saliency_map(model, image, ours_name, CLASS, base=base, noise=noise, batch_size=2)
        assert_relative(ours, reference[0], 1e-4)


def test_noise_tunnel_of_a_cam_is_the_mean_of_the_cams_of_the_noisy_copies(random_model, image):
    model = random_model("resnet18")
    noise = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2)) * 0.2
    maps = torch.stack([saliency_map(model, image + n, "layercam", CLASS, layer="layer3.1") for n in noise])
    torch.testing.assert_close(saliency_map(model, image, "vargrad", CLASS, base="layercam", layer="layer3.1",
                                            noise=noise), maps.var(0, unbiased=False), atol=1e-5, rtol=1e-4)


# --- perturbation CAMs and FullGrad against pytorch-grad-cam ---------------------------------------

def grad_cam_perturbation_raw(cls, model, x, layer, unit=None, **attributes):
    """pytorch-grad-cam's ``cls`` raw map (h, w) before its ReLU and scaling, for CLASS or ``unit``."""
    scored, index = (UnitScore(model, *unit), 0) if unit is not None else (model, CLASS)
    module = model.get_submodule(layer)
    cam = cls(model=scored, target_layers=[module])
    for key, value in attributes.items():
        setattr(cam, key, value)
    try:
        with torch.no_grad():
            scored(x)
        acts = model.get_submodule(layer)
        outputs = cam.activations_and_grads(x)
        activations = cam.activations_and_grads.activations[0].numpy().copy()
        raw = cam.get_cam_image(x, module, [ClassifierOutputTarget(index)], activations, None, False)
    finally:
        cam.activations_and_grads.release()
        if unit is not None:
            scored.handle.remove()
    del outputs, acts
    return raw[0]


# layers with at most 128 channels (one masked forward each), ReLU outputs (Ablation-CAM's ablation
# value is then 0 in pytorch-grad-cam too), and a later layer for the unit target
PERTURBATION_CASES = [("resnet18", "layer2.1", "layer3.0"), ("googlenet", "maxpool2", "inception3b"),
                      ("squeezenet1_1", "features.4", "features.7")]


@pytest.mark.parametrize("name,layer,unit_layer", PERTURBATION_CASES)
def test_scorecam_and_ablationcam_equal_pytorch_grad_cam(random_model, trainable_random_model, image, name, layer, unit_layer):
    model = random_model(name).module
    unit = (unit_layer, most_active_channel(model, image, unit_layer))
    for method, cls in (("scorecam", gc.ScoreCAM), ("ablationcam", gc.AblationCAM)):
        for target, unit_spec in ((CLASS, None), (UnitTarget(*unit), unit)):
            if unit_spec is not None and method == "ablationcam" and name != "resnet18":
                continue  # one unit case per method and architecture pair is enough time
            ours = saliency_map(model, image, method, target, layer=layer, batch_size=64, relu=False)
            reference = grad_cam_perturbation_raw(cls, trainable_random_model(name), image, layer, unit_spec, batch_size=64)
            assert_relative(ours, reference, 1e-4)
    assert not has_hooks(model)


@pytest.mark.parametrize("name", ["resnet18", "vgg11_bn", "mobilenet_v3_large"])
def test_fullgrad_equals_pytorch_grad_cam_after_its_scaling(random_model, trainable_random_model, image, name):
    """Class target, and a unit of the last visualisable layer (pytorch-grad-cam insists that every
    bias layer gets a gradient, so none may come after the unit)."""
    model = random_model(name).module
    layer = random_model(name).layers[-1]
    unit = (layer, most_active_channel(model, image, layer))
    for target, unit_spec in ((CLASS, None), (UnitTarget(*unit), unit)):
        ours = saliency_map(model, image, "fullgrad", target)
        thawed = trainable_random_model(name)
        scored, index = (UnitScore(thawed, *unit_spec), 0) if unit_spec else (thawed, CLASS)
        try:
            with gc.FullGrad(model=scored, target_layers=[]) as cam:
                reference = cam(input_tensor=image, targets=[ClassifierOutputTarget(index)])[0]
        finally:
            if unit_spec:
                scored.handle.remove()
        assert_relative(torch.from_numpy(scale_cam_image(ours[None].numpy())[0]), reference, 1e-4)
