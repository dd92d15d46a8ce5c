"""BatchNorm folding: the folded copy computes what the model computes, and only folds what it may."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from toolbox.models.batch_norm_folding import folded_copy, inference_copy

SIZE = 64


def batch_norms(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def with_random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy whose BatchNorms have non-trivial running statistics and affine parameters (a
    random-weight torchvision model has mean 0, var 1, gamma 1, beta 0, which folds to almost nothing)."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in batch_norms(model):
            norm = model.get_submodule(name)
            n = norm.num_features
            norm.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
            norm.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            norm.weight.copy_(torch.rand(n, generator=generator) + 0.5)
            norm.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model


@pytest.fixture(scope="module")
def batch():
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def assert_same_outputs(model, folded, x):
    with torch.inference_mode():
        want, got = model(x), folded(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "densenet121"])
def test_folded_copy_equals_the_model(random_model, batch, name):
    model = with_random_statistics(random_model(name).module)
    folded = folded_copy(model, batch[:1])
    assert_same_outputs(model, folded, batch)
    left = batch_norms(folded)
    if name == "densenet121":
        # a dense layer's first BatchNorm, a transition's and the last read concatenations: never folded
        assert left and all(n.rsplit(".", 1)[-1] in ("norm1", "norm", "norm5") for n in left)
        assert len(left) < len(batch_norms(model))
    else:
        assert left == []
    assert all(p.dim() != 4 or p.is_contiguous(memory_format=torch.channels_last) for p in folded.parameters())
    assert batch_norms(model), "the original keeps its BatchNorms"


def test_lite0_folded_copy_equals_the_model(lite0, cat_bgr):
    x = lite0.input_tensor(lite0.preprocess.model_view(cat_bgr))
    folded = folded_copy(lite0.module, x)
    assert batch_norms(folded) == []
    assert_same_outputs(lite0.module, folded, x)


def test_a_convolution_read_twice_is_not_folded():
    """conv -> bn, plus the conv's output added again: folding would change the second reader,
    so the copy keeps its BatchNorm (the check against the model's output catches it)."""

    class ReadTwice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            z = self.conv(x)
            return (self.bn(z) + z).mean((2, 3))

    model = with_random_statistics(ReadTwice().eval())
    x = torch.randn(2, 3, 8, 8)
    folded = folded_copy(model, x[:1])
    assert batch_norms(folded) == ["bn"]
    assert_same_outputs(model, folded, x)


def test_inference_copy_is_cached_until_parameters_change(random_model, batch):
    model = copy.deepcopy(random_model("resnet18").module)
    first = inference_copy(model, batch[:1])
    assert inference_copy(model, batch[:1]) is first
    with torch.no_grad():
        model.fc.bias.add_(1.0)
    second = inference_copy(model, batch[:1])
    assert second is not first
    assert_same_outputs(model, second, batch)


def test_copies_leave_the_models_hooks_and_what_they_refer_to_behind(random_model, batch):
    """A live window's model carries hooks bound to objects holding locks; deep-copying those
    would fail (locks cannot be copied) and would copy the window's state."""
    import threading

    class Owner:
        def __init__(self):
            self.lock = threading.Lock()
            self.calls = 0

        def hook(self, module, inputs):
            self.calls += 1

    model = copy.deepcopy(random_model("resnet18").module)
    owner = Owner()
    model.register_forward_pre_hook(owner.hook)
    model.layer1.register_forward_hook(lambda m, i, o: None)
    copied = inference_copy(model, batch[:1])
    assert not copied._forward_pre_hooks and not copied.layer1._forward_hooks
    assert len(model._forward_pre_hooks) == 1 and len(model.layer1._forward_hooks) == 1
    calls = owner.calls
    with torch.inference_mode():
        copied(batch)
    assert owner.calls == calls


def test_each_thread_gets_its_own_copy(random_model, batch):
    import threading

    model = random_model("resnet18").module
    mine = inference_copy(model, batch[:1])
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(inference_copy(model, batch[:1])))
    thread.start()
    thread.join()
    assert theirs[0] is not mine and inference_copy(model, batch[:1]) is mine
