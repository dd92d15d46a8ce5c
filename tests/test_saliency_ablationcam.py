"""Ablation-CAM on layers that are not ReLU outputs (block outputs ending in a BatchNorm, a
convolution before its BatchNorm), on lite0 and two random-weight architectures, class and unit targets.

There an ablated channel is set to the layer's minimum - 1e7. pytorch-grad-cam's AblationLayer
re-reads the minimum of the batch it is ablating after writing each copy, so in a batch of k
ablated copies copy i gets min - (i + 1) * 1e7: its map depends on its batch size. With one copy
per forward (batch_size=1) it ablates every channel with min - 1e7, and ours equals it; a
written-out loop (one channel, one full forward) is the independent check of both.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

gc = pytest.importorskip("pytorch_grad_cam")
from test_saliency_cams import assert_relative, most_active_channel  # noqa: E402
from test_saliency_families import grad_cam_perturbation_raw  # noqa: E402

from toolbox.analysis.saliency import UnitTarget, saliency_map  # noqa: E402
from toolbox.analysis.saliency.targets import ClassTarget, Target, target_scores_of  # noqa: E402
from toolbox.models.capture import forward_with_activations, has_hooks  # noqa: E402

SIZE = 64
CLASS = 7
ABLATION = 1e7  # pytorch-grad-cam's ABLATION_VALUE

# (model, non-ReLU layer, later layer for the unit target): an inverted-residual block output
# (BatchNorm, then the skip addition), and resnet18's convolution before its BatchNorm and ReLU.
# None of these outputs is overwritten in place later (pytorch-grad-cam would read the result).
NON_RELU_CASES = [("lite0", "_blocks.2", "_blocks.4"), ("mobilenet_v3_large", "features.3", "features.5"),
                  ("resnet18", "layer1.0.conv2", "layer2.0")]


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(11))


@pytest.fixture(scope="module")
def network(random_model, lite0):
    """name -> nn.Module: lite0 with its real weights (with random ones its signals fade to rounding
    noise within a few blocks, and so would its maps), torchvision models with seeded random ones."""
    return lambda name: (lite0 if name == "lite0" else random_model(name)).module


@pytest.fixture(scope="module")
def thawed_copy(trainable_random_model, lite0):
    """Trainable copies for pytorch-grad-cam (it refuses frozen models), one per architecture."""
    thawed_lite0 = copy.deepcopy(lite0.module).requires_grad_(True)
    return lambda name: thawed_lite0 if name == "lite0" else trainable_random_model(name)


def one_channel_at_a_time(model: nn.Module, x: torch.Tensor, target: Target, layer: str, value_of) -> torch.Tensor:
    """Ablation-CAM written out: for each channel c, one full forward of x with channel c of
    ``layer`` set to ``value_of(c)``; weight (score - ablated score) / score; map sum_c w_c A_c."""
    _, acts = forward_with_activations(model, x, [layer])
    activation = acts[layer][0]
    score = float(target_scores_of(model, x, target)[0])
    weights = []
    for c in range(activation.shape[0]):
        def ablate(module, inputs, output, c=c):
            output = output.clone()
            output[:, c] = value_of(c)
            return output

        handle = model.get_submodule(layer).register_forward_hook(ablate)
        try:
            weights.append((score - float(target_scores_of(model, x, target)[0])) / score)
        finally:
            handle.remove()
    return (torch.tensor(weights, dtype=activation.dtype)[:, None, None] * activation).sum(0)


def layer_minimum(model: nn.Module, x: torch.Tensor, layer: str) -> float:
    _, acts = forward_with_activations(model, x, [layer])
    return float(acts[layer].min())


@pytest.mark.parametrize("name,layer,unit_layer", NON_RELU_CASES)
def test_ablationcam_on_non_relu_layers_equals_pytorch_grad_cam_one_copy_per_forward(
        network, thawed_copy, image, name, layer, unit_layer):
    """Ours in batches of 16 against pytorch-grad-cam with batch_size=1 in float32 (within 2e-5 of
    the map: batches sum in another order than one image), and against the written-out loop in
    float64 (within 3e-14)."""
    model = network(name)
    low = layer_minimum(model, image, layer)
    assert low < 0, f"{layer} must not be a ReLU output for this test"
    unit = (unit_layer, most_active_channel(model, image, unit_layer))
    double, x64 = copy.deepcopy(model).double(), image.double()
    low64 = layer_minimum(double, x64, layer)
    for target, unit_spec in ((ClassTarget(CLASS), None), (UnitTarget(*unit), unit)):
        ours = saliency_map(model, image, "ablationcam", target, layer=layer, batch_size=16, relu=False)
        reference = grad_cam_perturbation_raw(gc.AblationCAM, thawed_copy(name), image, layer, unit_spec, batch_size=1)
        assert_relative(ours, reference, 1e-4)
        ours64 = saliency_map(double, x64, "ablationcam", target, layer=layer, batch_size=16, relu=False)
        written = one_channel_at_a_time(double, x64, target, layer, lambda c: low64 - ABLATION)
        assert ours64.dtype == torch.float64
        assert float((ours64 - written).abs().max() / written.abs().max()) <= 1e-12
    assert not has_hooks(model)


def reference_batch_values(low: float, batch_size: int):
    """The value pytorch-grad-cam's AblationLayer writes into channel c's copy when it ablates
    ``batch_size`` channels per forward: min - (i + 1) * 1e7 for copy i = c mod batch_size of the
    batch, accumulated in float32 as it does (each copy's value is the batch minimum - 1e7)."""
    values = [torch.tensor(low, dtype=torch.float32) - ABLATION]
    for _ in range(batch_size - 1):
        values.append(values[-1] - ABLATION)
    return lambda c: float(values[c % batch_size])


def test_pytorch_grad_cams_batched_ablation_lowers_each_later_copy_of_a_batch(network, thawed_copy, image):
    """The reference's batch_size changes its map on a layer that reaches the score linearly (a
    MobileNetV3 linear bottleneck with its skip): it equals the written-out loop with copy i of
    each batch ablated to min - (i + 1) * 1e7, not ours, which does not depend on the batch size."""
    name, layer = "mobilenet_v3_large", "features.3"
    model = network(name)
    low = layer_minimum(model, image, layer)
    batched = grad_cam_perturbation_raw(gc.AblationCAM, thawed_copy(name), image, layer, batch_size=8)
    written = one_channel_at_a_time(model, image, ClassTarget(CLASS), layer, reference_batch_values(low, 8))
    assert_relative(torch.as_tensor(batched), written, 1e-4)
    ours = {size: saliency_map(model, image, "ablationcam", CLASS, layer=layer, batch_size=size, relu=False)
            for size in (1, 8, 24)}
    assert_relative(ours[8], ours[1], 1e-5)
    assert_relative(ours[24], ours[1], 1e-5)
    difference = float((ours[8] - torch.as_tensor(batched)).abs().max() / ours[8].abs().max())
    assert difference > 0.1, f"the batched reference should differ on this layer, differs by {difference:.3g}"


def test_ablationcam_on_a_relu_output_ablates_with_zero(network, thawed_copy, image):
    """lite0's stem ReLU6 (minimum 0): the channel is set to 0, as the paper does, whatever the
    batch size, in pytorch-grad-cam's batches too."""
    model = network("lite0")
    assert layer_minimum(model, image, "_relu0") == 0
    written = one_channel_at_a_time(model, image, ClassTarget(CLASS), "_relu0", lambda c: 0.0)
    batched = grad_cam_perturbation_raw(gc.AblationCAM, thawed_copy("lite0"), image, "_relu0", batch_size=32)
    assert_relative(torch.as_tensor(batched), written, 1e-4)
    for size in (5, 32):
        ours = saliency_map(model, image, "ablationcam", CLASS, layer="_relu0", batch_size=size, relu=False)
        assert_relative(ours, written, 1e-4)


def test_the_batched_reference_agrees_where_a_relu_clips_the_ablated_value(network, thawed_copy, image):
    """resnet18's downsample branch (a BatchNorm output, negative minimum) is added to the block's
    main path and rectified: every value far below zero ends as the same 0, so pytorch-grad-cam's
    batches give our map although they ablate copy i with min - (i + 1) * 1e7."""
    model, layer = network("resnet18"), "layer2.0.downsample"
    assert layer_minimum(model, image, layer) < 0
    ours = saliency_map(model, image, "ablationcam", CLASS, layer=layer, batch_size=32, relu=False)
    batched = grad_cam_perturbation_raw(gc.AblationCAM, thawed_copy("resnet18"), image, layer, batch_size=32)
    assert_relative(ours, batched, 1e-4)
