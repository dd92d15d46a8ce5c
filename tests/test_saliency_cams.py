"""The gradient CAMs and Eigen-CAM equal pytorch-grad-cam's classes of the same name (raw map at the
layer's resolution after their ReLU, before their min-max scaling and resize), on three
random-weight architectures, at two layers each, for a class and for a unit target; and methods
that differ give different maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

gc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction  # noqa: E402

from toolbox.analysis.saliency import METHODS, UnitTarget, as_target, saliency_map, saliency_pass  # noqa: E402
from toolbox.analysis.saliency.backprop import backprop  # noqa: E402
from toolbox.analysis.saliency.cams import GRADIENT_CAMS, LAYER_CAMS, cam_from  # noqa: E402
from toolbox.errors import DeepvisError  # noqa: E402
from toolbox.models.capture import forward_with_activations, has_hooks  # noqa: E402

SIZE = 64
CLASS = 7
# Two layers per model, each a block output no in-place op overwrites (pytorch-grad-cam reads
# aliased activations on CPU otherwise), and for each a unit in a later layer.
LAYERS = {
    "resnet18": [("layer3.1", "layer4.0"), ("layer4.1", "layer4.1")],
    "vgg11_bn": [("features.20", "features.24"), ("features.27", "features.27")],
    "mobilenet_v3_large": [("features.12", "features.14"), ("features.16", "features.16")],
}
GC_CLASSES = {"gradcam": gc.GradCAM, "gradcam_plus_plus": gc.GradCAMPlusPlus, "xgradcam": gc.XGradCAM,
              "layercam": gc.LayerCAM, "hirescam": gc.HiResCAM, "gradcam_elementwise": gc.GradCAMElementWise,
              "eigengradcam": gc.EigenGradCAM, "eigencam": gc.EigenCAM}
CASES = [(name, layer, unit) for name, rows in LAYERS.items() for layer, unit in rows]


class UnitScore(nn.Module):
    """(B, 1): the max over space of one channel of one layer; a classifier for pytorch-grad-cam."""

    def __init__(self, model: nn.Module, layer: str, channel: int):
        super().__init__()
        self.model, self.channel = model, channel
        self.handle = model.get_submodule(layer).register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.kept = output

    def forward(self, x):
        self.model(x)
        return self.kept[:, self.channel].flatten(1).amax(1, keepdim=True)


def assert_relative(ours, reference, tol=1e-4):
    reference = torch.as_tensor(np.asarray(reference), dtype=torch.float32)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    scale = reference.abs().max()
    assert scale > 0, "reference map is all zeros: the comparison would prove nothing"
    error = float((ours.float() - reference).abs().max() / scale)
    assert error <= tol, f"max relative difference {error:.3g} > {tol}"


def most_active_channel(model: nn.Module, x: torch.Tensor, layer: str) -> int:
    """The channel of ``layer`` with the largest maximum on x (a unit target that is not dead)."""
    _, acts = forward_with_activations(model, x, [layer])
    return int(acts[layer][0].flatten(1).amax(1).argmax())


def grad_cam_raw(model: nn.Module, x: torch.Tensor, layer: str, unit=None, eigen: bool = False):
    """{method: pytorch-grad-cam's raw map (1, h, w) before its ReLU} for class CLASS or for ``unit``
    (layer, channel): one forward and backward through its ActivationsAndGradients, then each
    class's get_cam_image on that activation and gradient."""
    module = model.get_submodule(layer)
    scored, index = (UnitScore(model, *unit), 0) if unit is not None else (model, CLASS)
    cams = {m: cls(model=scored, target_layers=[module]) for m, cls in GC_CLASSES.items()}
    first = cams["gradcam"]
    for cam in cams.values():
        if cam is not first:
            cam.activations_and_grads.release()
    targets = [ClassifierOutputTarget(index)]
    try:
        outputs = first.activations_and_grads(x)
        model.zero_grad()
        targets[0](outputs[0]).backward()
        acts = first.activations_and_grads.activations[0].numpy().copy()
        grads = first.activations_and_grads.gradients[0].numpy().copy()
    finally:
        first.activations_and_grads.release()
        if unit is not None:
            scored.handle.remove()
    raw = {m: cam.get_cam_image(x, module, targets, acts, grads, False) for m, cam in cams.items()
           if eigen or not m.startswith("eigen")}  # their full SVDs take a second each on a busy CPU
    if eigen:
        raw["eigencam_sign_corrected"] = get_2d_projection_with_sign_correction(acts)
        raw["eigengradcam_sign_corrected"] = get_2d_projection_with_sign_correction(grads * acts)
    return raw


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name,layer,unit", CASES)
def test_gradient_cams_equal_pytorch_grad_cam_class_and_unit_targets(random_model, trainable_random_model, image, name, layer, unit):
    """Signed maps (before the ReLU) against pytorch-grad-cam's get_cam_image, from our one pass."""
    model = random_model(name).module
    unit = (unit, most_active_channel(model, image, unit))
    for target, unit_spec in ((CLASS, None), (UnitTarget(*unit), unit)):
        raw = grad_cam_raw(trainable_random_model(name), image, layer, unit_spec)
        result = backprop(model, image, as_target(target), input_rule=None, layer=layer)
        for method in GRADIENT_CAMS:
            if method != "eigengradcam":
                ours = cam_from(method, result.activations[layer], result.layer_gradient, relu=False)[0]
                assert_relative(ours, raw[method][0])
    assert not has_hooks(model) and all(p.grad is None and not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name,layer,unit", CASES[::2])
def test_eigen_cams_are_pytorch_grad_cams_projections_with_a_fixed_sign(random_model, trainable_random_model, image, name, layer, unit):
    """LAPACK picks the principal direction's sign, so pytorch-grad-cam's EigenCAM and EigenGradCAM
    flip between machines; ours equal its sign-corrected projection, and its own up to sign."""
    model = random_model(name).module
    raw = grad_cam_raw(trainable_random_model(name), image, layer, eigen=True)
    result = backprop(model, image, as_target(CLASS), input_rule=None, layer=layer)
    for method in ("eigencam", "eigengradcam"):
        ours = cam_from(method, result.activations[layer], result.layer_gradient, relu=False)[0]
        assert_relative(ours, raw[f"{method}_sign_corrected"][0], 1e-3)
        assert min(float((ours - s * torch.from_numpy(raw[method][0])).abs().max()) for s in (1, -1)) \
            <= 1e-3 * float(ours.abs().max())
    assert torch.equal(saliency_map(model, image, "eigencam", CLASS, layer=layer),
                       saliency_map(model, image, "eigencam", 3, layer=layer))  # no target involved


def test_live_pass_gives_the_same_map_as_saliency_map(random_model, image):
    model = random_model("resnet18")
    for method in LAYER_CAMS:
        live = saliency_pass(model, image, method, CLASS, layer="layer3.1", capture=model.layers)
        assert torch.allclose(live.map, saliency_map(model, image, method, CLASS, layer="layer3.1"), atol=1e-6)
        assert set(model.layers) <= set(live.activations)


def test_methods_that_differ_give_different_maps(random_model, image):
    """At a layer whose gradient varies over space and whose activations take both signs (an
    inverted residual block ends with BatchNorm) every CAM is its own map, so a method that
    silently returned another's would fail here. (Where the gradient is constant over space,
    right before global pooling, Grad-CAM and HiResCAM coincide; on ReLU outputs LayerCAM and
    element-wise Grad-CAM do.)"""
    model = random_model("mobilenet_v3_large")
    maps = {m: saliency_map(model, image, m, CLASS, layer="features.12") for m in LAYER_CAMS}
    for a in maps:
        for b in maps:
            if a < b:
                scale = max(float(maps[a].max()), float(maps[b].max()))
                cosine = torch.nn.functional.cosine_similarity(maps[a].flatten(), maps[b].flatten(), dim=0)
                assert float((maps[a] - maps[b]).abs().max()) > 1e-3 * scale, f"{a} == {b}"
                assert float(cosine) < 0.9999, f"{a} is {b} rescaled"


def test_cam_after_global_pooling_is_refused_naming_a_valid_layer(random_model, image):
    model = random_model("resnet18").module
    for method in ("gradcam", "eigencam", "scorecam"):
        with pytest.raises(DeepvisError, match="layer 'avgpool' outputs 1x512x1x1.*e.g. 'layer4.1"):
            saliency_map(model, image, method, CLASS, layer="avgpool")


def test_every_method_has_a_title_and_a_one_line_description():
    for name, method in METHODS.items():
        assert method.title and method.description and "\n" not in method.description, name
    assert set(LAYER_CAMS) <= set(METHODS)


def test_cam_on_a_model_without_spatial_layers_says_so():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    for method in ("gradcam", "eigencam", "ablationcam"):
        with pytest.raises(DeepvisError, match="layer '1' outputs 1x8, not a spatial.*this model has no spatial"):
            saliency_map(mlp, torch.zeros(1, 3, 4, 4), method, 0, layer="1")
