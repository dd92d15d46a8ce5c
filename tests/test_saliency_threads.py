"""Saliency leaves other threads' work on the same model alone, and theirs leaves it alone.

The live window's compute thread runs the single-pass methods on the model that dreams, unit
pictures and inversions use meanwhile from their own threads. While it runs LRP (BatchNorms folded
into the weights, zennit's rule hooks on every layer), Grad-CAM (its layer's output cut from the
graph), FullGrad (taps on every bias layer) or Eigen-CAM passes, a dream step in another thread
must give what it gives on a clean copy of the model, and each live map what the clean copy gives.
The same holds for the analysis functions that hook a layer for the length of a call (Ablation-CAM
replaces its layer's output, the concept gradient cuts the graph there, unit scores capture it).
"""
from __future__ import annotations

import copy
import dataclasses
import threading
from types import SimpleNamespace

import pytest
import torch

from toolbox.analysis.latent.concepts import layer_gradient
from toolbox.analysis.optimise.network import CutNetwork
from toolbox.analysis.saliency import ClassTarget, UnitTarget, saliency_map, saliency_pass
from toolbox.analysis.saliency.targets import target_scores_of
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
CLASS = 7


def dream_step(net: CutNetwork, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What a dream step computes: the layer's activation and the gradient of its mean square
    with respect to the image."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        act = net(x)[DREAM_LAYER]
        (grad,) = torch.autograd.grad(act.pow(2).mean(), x)
    return act.detach(), grad


def dream_step_of(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with CutNetwork(model, [DREAM_LAYER], method="hooks") as net:
        return dream_step(net, x)


def compare(got: tuple[torch.Tensor, ...], expected: tuple[torch.Tensor, ...], what: str) -> None:
    for a, b in zip(got, expected):
        if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max())):
            raise AssertionError(f"{what} differs from the clean model's")


def alongside(work, repeats: int, meanwhile) -> list:
    """work()'s results, called in this thread at least ``repeats`` times and until another thread,
    calling ``meanwhile()`` over and over meanwhile (each call raises if its result is wrong), has
    called it ``repeats`` times too; fails naming the other thread's first problems."""
    results, runs, problems = [], [0], []
    started, finished = threading.Barrier(2), threading.Event()

    def other():
        started.wait()
        while not finished.is_set():
            try:
                meanwhile()
            except Exception as exc:  # noqa: BLE001 - reported below
                problems.append(f"run {runs[0]}: {type(exc).__name__}: {exc}")
            runs[0] += 1

    thread = threading.Thread(target=other)
    thread.start()
    try:
        started.wait()
        while len(results) < repeats or runs[0] < repeats:
            results.append(work())
    finally:
        finished.set()
        thread.join()
    assert not problems, problems[:3]
    return results


@pytest.fixture(scope="module")
def shared(random_model):
    return random_model(MODEL)


@pytest.fixture(scope="module")
def clean(shared):
    return dataclasses.replace(shared, module=copy.deepcopy(shared.module))


@pytest.mark.parametrize("method", ["lrp_epsilon_plus_flat", "gradcam", "fullgrad", "eigencam"])
def test_a_dream_in_another_thread_is_untouched_by_the_live_saliency_pass(shared, clean, cat_bgr, method):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    layers = list(shared.layers)
    saliency = LiveSaliency(shared, layer_shapes(shared, layers), SimpleNamespace(layers=layers, analyser=None),
                            TaskRunner(), load_config().saliency)
    state = AppState(layer=layers.index(CAM_LAYER), overlay=method, extras={TARGET: ("class",)})
    frame = Frame(cat_bgr, 0, 0.0)
    expected = dream_step_of(clean, x)
    with CutNetwork(shared, [DREAM_LAYER], method="hooks") as net:
        maps = alongside(lambda: saliency.forward(frame, state), PASSES,
                         lambda: compare(dream_step(net, x), expected, "the dream step"))
    assert saliency.error == "" and all(m is not None for m in maps)
    view = clean.preprocess.model_view(cat_bgr)
    reference = saliency_pass(clean, clean.input_tensor(view), method, ClassTarget(), layer=CAM_LAYER).map
    for m in maps:
        torch.testing.assert_close(m.saliency.map, reference, rtol=1e-4, atol=1e-6 * float(reference.abs().max()))
    assert all(not p.requires_grad for p in shared.module.parameters())
    for name, tensor in shared.module.state_dict().items():  # no folded weight left behind
        assert torch.equal(tensor, clean.module.state_dict()[name]), name


def full_gradient(module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A plain forward and backward through the whole model: logits and d logit[CLASS] / d x."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        logits = module(x)
        (grad,) = torch.autograd.grad(logits[:, CLASS].sum(), x)
    return logits.detach(), grad


ONE_CALL_HOOKS = {
    "ablationcam": lambda m, x: saliency_map(m, x, "ablationcam", CLASS, layer=CAM_LAYER, batch_size=64),
    "concept gradient": lambda m, x: layer_gradient(m, x, CAM_LAYER, CLASS)[1],
    "unit score": lambda m, x: target_scores_of(m, x, UnitTarget(DREAM_LAYER, 3)),
    "eigencam": lambda m, x: saliency_map(m, x, "eigencam", CLASS, layer=CAM_LAYER),
}


@pytest.mark.parametrize("name", list(ONE_CALL_HOOKS))
def test_a_layer_hooked_for_one_call_acts_on_that_threads_forwards_only(shared, clean, name):
    """Each function hooks CAM_LAYER or DREAM_LAYER of the shared model for the length of its call,
    while another thread runs plain forwards and backwards of it: both get the clean model's results."""
    run = ONE_CALL_HOOKS[name]
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    other_x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    alone, other_expected = run(clean.module, x), full_gradient(clean.module, other_x)
    results = alongside(lambda: run(shared.module, x), 2,
                        lambda: compare(full_gradient(shared.module, other_x), other_expected, "the other forward"))
    for result in results:
        compare((result,), (alone,), name)
