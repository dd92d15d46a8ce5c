"""Saliency on lite0 with its real weights: the maps depend on the model (Adebayo et al.'s
cascading randomisation) and Grad-CAM finds the cat."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolbox.analysis.saliency import METHODS, saliency_map
from toolbox.analysis.saliency.sanity import (SanityRow, cascading_randomisation, lite0_cascade, rank_correlation,
                                              strided_stages)
from toolbox.render.heatmap import signed_part, upsample

ROOT = Path(__file__).resolve().parents[1]
EGYPTIAN_CAT = 285
# A map that explains the model must lose most of its ranking when the model's top layers are
# destroyed. Adebayo et al. (2018, Fig. 4) find passing methods fall to rank correlations of about
# 0.1-0.4 after the top blocks are re-initialised, while guided backprop, which fails the check,
# stays above 0.8 (ours too: see scripts/sanity_checks.py). 0.5 separates the two regimes.
CHANGED_BELOW = 0.5


@pytest.fixture(scope="module")
def cat_input(lite0, cat_bgr):
    return lite0.input_tensor(lite0.preprocess.model_view(cat_bgr))


def test_cascading_randomisation_changes_gradient_and_gradcam(lite0, cat_input):
    methods = {
        "gradient": lambda module, x: signed_part(saliency_map(module, x, "gradient", EGYPTIAN_CAT)),
        "gradcam": lambda module, x: saliency_map(module, x, "gradcam", EGYPTIAN_CAT, layer="_relu1", relu=False),
    }
    stages = lite0_cascade(lite0.module)[:4]  # fc, head conv, blocks 15 and 14
    fc_before = lite0.module._fc.weight.clone()
    rows = cascading_randomisation(lite0.module, cat_input, stages, methods, seed=0)
    assert rows[0].correlations["gradcam"] < CHANGED_BELOW  # Grad-CAM already changes with the fc weights
    assert rows[-1].correlations["gradient"] < CHANGED_BELOW
    assert rows[-1].correlations["gradcam"] < CHANGED_BELOW
    assert torch.equal(lite0.module._fc.weight, fc_before)  # a copy was randomised, not the caller's model


def test_gradcam_puts_most_mass_on_the_cat(lite0, cat_bgr):
    """The cat is pasted at a known box (a third of the frame) of a plain grey frame, so the mask is
    exact. Most of Grad-CAM's mass must fall inside it, and its density there must be several times
    the density on the grey. (A 7x7 map localises to 32-pixel cells, and lite0's receptive fields
    reach past the box, so "all of it" would be the wrong bar.)"""
    size = lite0.preprocess.size
    cat = cv2.resize(lite0.preprocess.model_view(cat_bgr), (128, 128), interpolation=cv2.INTER_AREA)
    frame = np.full((size, size, 3), 128, np.uint8)
    top, left = 80, 16
    frame[top : top + 128, left : left + 128] = cat
    mask = torch.zeros(size, size)
    mask[top : top + 128, left : left + 128] = 1
    cam = saliency_map(lite0, lite0.input_tensor(frame), "gradcam", EGYPTIAN_CAT)  # deepest layer, 7x7
    heat = upsample(cam, size).clamp_min(0)
    inside = float((heat * mask).sum() / heat.sum())
    share = float(mask.mean())
    assert share < 0.35
    assert inside > 0.5, f"only {inside:.2f} of Grad-CAM's mass is on the cat"
    density_ratio = (inside / share) / ((1 - inside) / (1 - share))
    assert density_ratio > 2.5, f"Grad-CAM is only {density_ratio:.1f}x denser on the cat than on the grey"


# --- the cascade itself, on a small input (seconds) --------------------------------------------------

@pytest.fixture(scope="module")
def script():
    """scripts/sanity_checks.py as a module."""
    spec = importlib.util.spec_from_file_location("sanity_checks", ROOT / "scripts" / "sanity_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_cat(cat_input):
    """The cat at 128 px: lite0's _relu1 is then 4x4, enough for every property below."""
    return F.interpolate(cat_input, size=(128, 128), mode="area")


def _owned_parameters(module: nn.Module, names) -> set[str]:
    return {f"{n}.{p}" for n in names for p, _ in module.get_submodule(n).named_parameters()}


def test_randomised_copies_differ_from_the_model_only_in_the_stages_reached(lite0, small_cat):
    """Stride 6 reaches the whole network in four rows (fc; head and blocks 15-11; 10-5; 4-0 and
    the stem). At each row exactly the parameters of that row and the rows above differ from the
    trained ones (every element redrawn), the rest and every buffer are the trained tensors."""
    stages = strided_stages(lite0_cascade(lite0.module), 6)
    assert [label for label, _ in stages] == ["_fc", "_blocks.11", "_blocks.5", "_conv_stem"]
    trained = {k: v.clone() for k, v in lite0.module.state_dict().items()}
    seen = []

    def record(module, x):
        seen.append({k: v.clone() for k, v in module.state_dict().items()})
        return torch.rand(4, 4)

    cascading_randomisation(lite0.module, small_cat, stages, {"record": record}, seed=0)
    assert len(seen) == 1 + len(stages) and all(torch.equal(seen[0][k], v) for k, v in trained.items())
    parameters = {n for n, _ in lite0.module.named_parameters()}
    for i, state in enumerate(seen[1:]):
        reached = _owned_parameters(lite0.module, [n for _, names in stages[: i + 1] for n in names])
        for key, value in state.items():
            if key in reached:
                assert bool((value != trained[key]).all()), f"row {stages[i][0]}: {key} not redrawn"
            else:
                assert torch.equal(value, trained[key]), f"row {stages[i][0]}: {key} changed out of turn"
    assert reached == parameters  # the stem row leaves no trained parameter
    assert all(torch.equal(v, trained[k]) for k, v in lite0.module.state_dict().items())  # caller's model intact


def test_eigencam_ignores_layers_above_its_layer_and_gradient_does_not(lite0, small_cat):
    """Eigen-CAM at _relu1 is a function of _relu1's activation alone: randomising _fc (above it)
    must leave the map identical (rank correlation exactly 1), and the head convolution under it
    must change it. The plain gradient flows through _fc, so the same first row changes it (at
    224 px it falls below CHANGED_BELOW there: test_cascading_randomisation_changes_gradient_and_gradcam)."""
    methods = {"eigencam": lambda m, x: saliency_map(m, x, "eigencam", EGYPTIAN_CAT, layer="_relu1", relu=False),
               "gradient": lambda m, x: signed_part(saliency_map(m, x, "gradient", EGYPTIAN_CAT))}
    rows = cascading_randomisation(lite0.module, small_cat, lite0_cascade(lite0.module)[:2], methods, seed=0)
    assert rows[0].correlations["eigencam"] == pytest.approx(1.0, abs=1e-12)
    assert rows[1].correlations["eigencam"] < 0.999
    assert abs(rows[0].correlations["gradient"]) < 0.8, rows[0].correlations["gradient"]


def test_rank_correlation_is_spearmans():
    a = torch.arange(12.0).reshape(3, 4)
    assert rank_correlation(a, a.exp()) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a, torch.ones(3, 4)) == 0.0
    b = torch.tensor([[3.0, 1.0], [2.0, 4.0]])
    assert rank_correlation(b, torch.tensor([[1.0, 2.0], [3.0, 4.0]])) == pytest.approx(0.4)  # 1 - 6*6/(4*15)


@pytest.mark.parametrize("method", ["lrp_epsilon_plus_flat", "lrp_alpha2_beta1", "eigencam", "eigengradcam"])
def test_the_scripts_references_give_our_maps_on_lite0(script, lite0, small_cat, method):
    """The independent implementations that --with-reference runs (zennit with its own batch-norm
    merging and a Sum canonizer; pytorch-grad-cam) equal ours on lite0, so equal correlation curves
    in the cascade mean the method, not our code, fails. Eigen maps up to LAPACK's sign. (The
    FullGrad reference is pytorch-grad-cam's own call, equal to ours in test_saliency_families and
    slow on lite0's 50 bias layers.)"""
    ours = script.methods_for([method])[method](lite0.module, small_cat)
    reference = script.reference_methods([method])[f"{method} [{script.REFERENCES[method][0]}]"](lite0.module, small_cat)
    if method.startswith("eigen"):
        reference = reference * torch.sign((reference * ours).sum())
    scale = float(reference.abs().max())
    assert scale > 0 and float((ours - reference).abs().max()) <= 1e-4 * scale


def test_verdicts_name_expected_and_unexpected_failures(script):
    assert {"guided", "deconvnet"} <= set(script.EXPECTED_FAILURES) <= set(METHODS)
    assert not set(script.EXPECTED_FAILURES) & set(script.BORDERLINE) and set(script.BORDERLINE) <= set(METHODS)
    assert set(script.REFERENCES) <= set(METHODS)
    falls = [SanityRow(str(i), {"m": c}) for i, c in enumerate([0.9, 0.3, 0.2, 0.1])]
    stays = [SanityRow(str(i), {"m": c}) for i, c in enumerate([0.9, 0.8, -0.7, 0.6])]
    assert script.passes(falls, "m") and not script.passes(stays, "m")
    assert script.verdict("gradient", [True]) == "pass"
    assert script.verdict("gradient", [True, False]) == "FAIL in 1 of 2 seeds (unexpected)"
    assert script.verdict("guided", [False]).startswith("FAIL (expected: ")
    assert script.verdict("guided [captum]", [True]) == "unexpected pass"
    assert script.verdict("squaregrad", [True, False]).startswith("FAIL in 1 of 2 seeds (borderline: ")
    assert script.verdict("squaregrad [captum]", [True]).startswith("pass (borderline: ")
    assert script.markdown([falls, stays], ["m"]).splitlines()[3] == "| 1 | 0.30..0.80 |"
