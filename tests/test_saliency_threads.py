"""The live window's saliency pass leaves other threads' work on the same model alone.

The compute thread runs the single-pass methods on the model that dreams, unit pictures and
inversions use meanwhile from their own threads. While it runs LRP (BatchNorms folded into the
weights, zennit's rule hooks on every layer), Grad-CAM (its layer's output cut from the graph),
FullGrad (taps on every bias layer) or Eigen-CAM passes, a dream step in another thread must give
what it gives on a clean copy of the model, and each live map what the clean copy gives.
"""
from __future__ import annotations

import copy
import dataclasses
import threading
from types import SimpleNamespace

import pytest
import torch

from toolbox.analysis.optimise.network import CutNetwork
from toolbox.analysis.saliency import ClassTarget, saliency_pass
from toolbox.app.live import layer_shapes
from toolbox.app.saliency_plugin import TARGET, LiveSaliency
from toolbox.app.state import AppState
from toolbox.app.tasks import TaskRunner
from toolbox.config import load_config
from toolbox.sources.frame import Frame

MODEL = "resnet18"  # BatchNorms to fold, no ReLU6: the dream runs through hooks on the shared modules
CAM_LAYER = "layer2.1"  # before the dream layer: a cut here would stop the dream's backward
DREAM_LAYER = "layer3.1"
PASSES = 3


def dream_step(net: CutNetwork, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What a dream step computes: the layer's activation and the gradient of its mean square
    with respect to the image."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        act = net(x)[DREAM_LAYER]
        (grad,) = torch.autograd.grad(act.pow(2).mean(), x)
    return act.detach(), grad


@pytest.fixture(scope="module")
def shared(random_model):
    return random_model(MODEL)


@pytest.fixture(scope="module")
def clean(shared):
    return dataclasses.replace(shared, module=copy.deepcopy(shared.module))


@pytest.mark.parametrize("method", ["lrp_epsilon_plus_flat", "gradcam", "fullgrad", "eigencam"])
def test_a_dream_in_another_thread_is_untouched_by_the_live_saliency_pass(shared, clean, cat_bgr, method):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with CutNetwork(clean, [DREAM_LAYER], method="hooks") as net:
        expected = dream_step(net, x)
    layers = list(shared.layers)
    saliency = LiveSaliency(shared, layer_shapes(shared, layers), SimpleNamespace(layers=layers, analyser=None),
                            TaskRunner(), load_config().saliency)
    state = AppState(layer=layers.index(CAM_LAYER), overlay=method, extras={TARGET: ("class",)})
    frame = Frame(cat_bgr, 0, 0.0)
    maps, steps, problems = [], [0], []
    started, finished = threading.Barrier(2), threading.Event()

    def dream_meanwhile():
        with CutNetwork(shared, [DREAM_LAYER], method="hooks") as net:
            started.wait()
            while not finished.is_set():
                try:
                    act, grad = dream_step(net, x)
                    if not (torch.allclose(act, expected[0], rtol=1e-5, atol=1e-6)
                            and torch.allclose(grad, expected[1], rtol=1e-4, atol=1e-9)):
                        problems.append(f"step {steps[0]}: activation or gradient differs from the clean model's")
                except Exception as exc:  # noqa: BLE001 - reported below
                    problems.append(f"step {steps[0]}: {type(exc).__name__}: {exc}")
                steps[0] += 1

    dreamer = threading.Thread(target=dream_meanwhile)
    dreamer.start()
    try:
        started.wait()
        for _ in range(PASSES):
            maps.append(saliency.forward(frame, state))
    finally:
        finished.set()
        dreamer.join()
    assert steps[0] >= PASSES, "the dream thread must have run alongside the passes"
    assert not problems, problems[:3]
    assert saliency.error == "" and all(m is not None for m in maps)
    view = clean.preprocess.model_view(cat_bgr)
    reference = saliency_pass(clean, clean.input_tensor(view), method, ClassTarget(), layer=CAM_LAYER).map
    for m in maps:
        torch.testing.assert_close(m.saliency.map, reference, rtol=1e-4, atol=1e-6 * float(reference.abs().max()))
    assert all(not p.requires_grad for p in shared.module.parameters())
    for name, tensor in shared.module.state_dict().items():  # no folded weight left behind
        assert torch.equal(tensor, clean.module.state_dict()[name]), name
