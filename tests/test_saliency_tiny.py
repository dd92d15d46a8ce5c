"""Saliency on a tiny fixed-weight network with hand-computed expected maps, and the promises
every method makes about the model it reads (never mutated, no hooks, no gradients left behind)."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolbox.analysis.saliency import METHODS, UnitTarget, saliency_map, saliency_pass
from toolbox.analysis.saliency.rectifiers import rectifier_rules
from toolbox.models.capture import has_hooks

# x is one 1-channel 2x2 image. The net: 1x1 conv to two channels (x, -x), a rectifier,
# sum over space, then a linear layer; class 0 score = sum(rect(x)) - 2 * sum(rect(-x)).
X = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]]]])


class Tiny(nn.Module):
    def __init__(self, rectifier: str = "relu"):
        super().__init__()
        self.rectifier = rectifier
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.conv.weight.data = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
        self.act = {"relu": nn.ReLU(), "inplace": nn.ReLU(inplace=True), "relu6": nn.ReLU6()}.get(rectifier, nn.Identity())
        self.fc = nn.Linear(2, 2, bias=False)
        self.fc.weight.data = torch.tensor([[1.0, -2.0], [-1.0, 1.0]])
        self.eval().requires_grad_(False)

    def forward(self, x):
        y = self.conv(x)
        if self.rectifier == "functional":
            y = F.relu(y)
        elif self.rectifier == "tensor_inplace":
            y.relu_()  # result ignored on purpose: in place must stay in place
        else:
            y = self.act(y)
        return self.fc(y.sum(dim=(2, 3)))


def t(rows):
    return torch.tensor(rows)


RELU_VARIANTS = ["relu", "inplace", "functional", "tensor_inplace"]


@pytest.mark.parametrize("rectifier", RELU_VARIANTS)
def test_tiny_relu_maps_equal_hand_computed_values(rectifier):
    model = Tiny(rectifier)
    # class 0: d score / d rect = +1 on channel x, -2 on channel -x.
    expected = {
        "gradient": t([[1.0, 2.0], [1.0, 1.0]]),  # 1 where x > 0, (-2)(-1) where x < 0
        "guided": t([[1.0, 0.0], [1.0, 1.0]]),  # the -2 is clipped before the gate
        "deconvnet": t([[1.0, 1.0], [1.0, 1.0]]),  # +1 passes everywhere, -2 is clipped
        "input_x_gradient": t([[1.0, -4.0], [3.0, 0.5]]),
        "integrated_gradients": t([[1.0, -4.0], [3.0, 0.5]]),  # piecewise linear and homogeneous
    }
    for method, want in expected.items():
        got = saliency_map(model, X, method, 0, **({"steps": 4} if method == "integrated_gradients" else {}))
        torch.testing.assert_close(got[0], want, msg=f"{rectifier} {method}")
    # occlusion, 1x1 windows: score(x) = 0.5 minus the score with that pixel zeroed.
    torch.testing.assert_close(saliency_map(model, X, "occlusion", 0, window=1, stride=1), t([[1.0, -4.0], [3.0, 0.5]]))
    # Grad-CAM at the conv (pre-rectifier) output: channel weights 0.75 and -0.5 -> relu(1.25 x).
    # With an in-place rectifier after the conv a wrong implementation reads post-ReLU values.
    torch.testing.assert_close(saliency_map(model, X, "gradcam", 0, layer="conv"), t([[1.25, 0.0], [3.75, 0.625]]))


def test_tiny_gradcam_at_rectifier_output_and_unit_targets():
    model = Tiny("relu")
    torch.testing.assert_close(saliency_map(model, X, "gradcam", 0, layer="act"), t([[1.0, 0.0], [3.0, 0.5]]))
    # unit (act, channel 0): max is rect(3) at (1, 0); mean is a quarter of the gate
    torch.testing.assert_close(saliency_map(model, X, "gradient", UnitTarget("act", 0, "max"))[0], t([[0.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(saliency_map(model, X, "gradient", UnitTarget("act", 0, "mean"))[0],
                               t([[0.25, 0.0], [0.25, 0.25]]))
    torch.testing.assert_close(saliency_map(model, X, "guided", None)[0], t([[1.0, 0.0], [1.0, 1.0]]))  # top-1 is 0


def test_tiny_relu6_gates_outside_zero_six_and_rectifies_for_guided():
    model = Tiny("relu6")
    x = torch.tensor([[[[1.0, -2.0], [8.0, 0.5]]]])  # 8 saturates ReLU6
    torch.testing.assert_close(saliency_map(model, x, "gradient", 0)[0], t([[1.0, 2.0], [0.0, 1.0]]))
    torch.testing.assert_close(saliency_map(model, x, "guided", 0)[0], t([[1.0, 0.0], [0.0, 1.0]]))
    # deconvnet ignores the rectifier's switch (x > 0) but keeps the saturation's gate (x < 6)
    torch.testing.assert_close(saliency_map(model, x, "deconvnet", 0)[0], t([[1.0, 1.0], [0.0, 1.0]]))


def _snapshot(model: nn.Module):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(n, type(m), id(m)) for n, m in model.named_modules()],
            {n: p.requires_grad for n, p in model.named_parameters()})


@pytest.mark.parametrize("trainable", [False, True])
def test_every_method_leaves_model_and_input_untouched(trainable):
    model = Tiny("inplace").requires_grad_(trainable)
    before = _snapshot(model)
    x = X.clone()
    for method in METHODS:
        noise = {"noise": torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))}
        options = {"integrated_gradients": {"steps": 4}, "smoothgrad": noise, "squaregrad": noise, "vargrad": noise,
                   "occlusion": {"window": 1, "stride": 1}}.get(method, {})
        layer = "conv" if METHODS[method].needs_layer else None
        first = saliency_map(model, x, method, 0, layer=layer, **options)
        second = saliency_map(model, x, method, 0, layer=layer, **options)
        torch.testing.assert_close(first, second, msg=f"{method} changed between calls")
    after = _snapshot(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:]  # same module objects, same requires_grad flags
    assert all(p.grad is None for p in model.parameters())
    assert x.grad is None and not x.requires_grad and torch.equal(x, X)
    assert not has_hooks(model)
    assert not torch._C._is_torch_function_mode_enabled()


def test_hooks_removed_and_mode_left_when_forward_fails():
    model = Tiny("relu")
    with pytest.raises(RuntimeError):
        saliency_map(model, torch.zeros(1, 3, 2, 2), "guided", 0)  # wrong channel count
    assert not has_hooks(model) and not torch._C._is_torch_function_mode_enabled()


def test_guided_warns_naming_unhandled_activation_modules():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.SiLU(), nn.Flatten(), nn.Linear(8, 2)).eval()
    with pytest.warns(UserWarning, match=r"1 \(SiLU\)"):
        saliency_map(model, X, "guided", 0)
    with pytest.warns(UserWarning, match="no ReLU"):
        saliency_map(model, X, "deconvnet", 0)


def test_plain_rule_equals_autograd_gradient_through_intercepted_rectifiers():
    model = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU6(), nn.Conv2d(3, 3, 1), nn.ReLU(inplace=True), nn.Flatten(),
                          nn.Linear(12, 2)).eval()
    x = torch.randn(1, 1, 2, 2) * 5
    with rectifier_rules(model, "guided") as state:
        xr = x.clone().requires_grad_()
        out = model(xr)[0, 1]
    state.rule = "plain"
    (ours,) = torch.autograd.grad(out, xr)
    assert state.calls == 2
    torch.testing.assert_close(ours, saliency_map(model, x, "gradient", 1)[None], rtol=0, atol=0)


class InPlaceAfterRectifier(nn.Module):
    """Rectifier calls whose tensors are changed in place before or after, as real models do."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern
        self.conv = nn.Conv2d(1, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        if self.pattern == "relu_on_a_view":
            y[:, :2].relu_()
        elif self.pattern == "relu6_then_div_":  # timm's hard sigmoid: relu6(x + 3).div_(6)
            y = F.relu6(y + 3).div_(6)
        elif self.pattern == "relu6_inplace":
            F.relu6(y, inplace=True)
        elif self.pattern == "hardtanh_":
            F.hardtanh_(y, 0.0, 2.0)
        return y.sum(dim=(2, 3))


@pytest.mark.parametrize("pattern", ["relu_on_a_view", "relu6_then_div_", "relu6_inplace", "hardtanh_"])
def test_in_place_rectifiers_and_in_place_changes_after_them_differentiate_as_autograd_does(pattern):
    model = InPlaceAfterRectifier(pattern).eval()
    x = torch.randn(1, 1, 3, 3, generator=torch.Generator().manual_seed(0)) * 4
    with rectifier_rules(model, "guided") as state:
        xr = x.clone().requires_grad_()
        out = model(xr)[0]
    objective = out[0] - 2 * out[1] + out[2] - out[3]
    state.rule = "plain"
    (plain,) = torch.autograd.grad(objective, xr, retain_graph=True)
    state.rule = "guided"
    (guided,) = torch.autograd.grad(objective, xr)
    xr = x.clone().requires_grad_()
    out = model(xr)[0]
    (reference,) = torch.autograd.grad(out[0] - 2 * out[1] + out[2] - out[3], xr)
    torch.testing.assert_close(plain, reference, rtol=0, atol=0)
    assert state.calls == 1 and not torch.equal(guided, plain)


def test_saliency_pass_returns_map_activations_and_back_diffs_from_one_pass():
    model = Tiny("relu")
    live = saliency_pass(model, X, "gradient", 0, layer="act", capture=["conv"])
    torch.testing.assert_close(live.map[0], t([[1.0, 2.0], [1.0, 1.0]]))
    torch.testing.assert_close(live.layer_gradient, torch.tensor([1.0, -2.0]).view(2, 1, 1).expand(2, 2, 2))
    assert set(live.activations) == {"act", "conv"} and live.class_index == 0
    cam = saliency_pass(model, X, "gradcam", 0, layer="act")
    torch.testing.assert_close(cam.map, t([[1.0, 0.0], [3.0, 0.5]]))


class _CountingIdentity(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        _CountingIdentity.calls += 1
        return grad


class _Probed(Tiny):
    def forward(self, x):
        return super().forward(_CountingIdentity.apply(x * 1.0))


def test_gradcam_backward_stops_at_its_layer_and_no_parameter_gradient_is_computed():
    model = _Probed("relu").requires_grad_(True)  # trainable, as a user's own model may be
    parameter_grads = []
    handles = [p.register_hook(lambda g: parameter_grads.append(g)) for p in model.parameters()]
    _CountingIdentity.calls = 0
    saliency_map(model, X, "gradcam", 0, layer="act")
    assert _CountingIdentity.calls == 0  # nothing before the layer was differentiated
    saliency_map(model, X, "gradient", 0)
    assert _CountingIdentity.calls == 1
    for handle in handles:
        handle.remove()
    assert parameter_grads == [] and all(p.requires_grad for p in model.parameters())


def test_rectifier_interception_is_confined_to_the_calling_thread():
    import threading

    seen = []
    with rectifier_rules(Tiny("relu"), "guided"):
        worker = threading.Thread(target=lambda: seen.append(torch._C._is_torch_function_mode_enabled()))
        worker.start()
        worker.join()
        seen.append(torch._C._is_torch_function_mode_enabled())
    assert seen == [False, True]  # the display thread of the live app is never intercepted
