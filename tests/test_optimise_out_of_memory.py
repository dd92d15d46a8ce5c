"""The engine's out-of-memory fallback for whole-image objectives (inversion, style), simulated on CPU.

A device that holds the gradient pass of at most ``max_pixels`` pixels is simulated by a network
that raises torch's OutOfMemoryError above that size (as CUDA does); the real-cap run on a GPU
is in tests/test_cuda.py.
"""
from __future__ import annotations

import cv2
import pytest
import torch

from toolbox.analysis.dream.core import bgr_to_rgb01
from toolbox.analysis.inversion import InversionSettings, invert
from toolbox.analysis.optimise.features import FeatureGradient
from toolbox.analysis.optimise.octaves import resize
from toolbox.analysis.style import StyleSettings, Stylist
from toolbox.errors import DeepvisError

OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
LAYER = "_blocks.4"


class CappedNetwork:
    """A cut network whose gradient passes above ``max_pixels`` pixels run out of (simulated) memory."""

    def __init__(self, net, max_pixels: int):
        self.net, self.max_pixels, self.sizes = net, max_pixels, []

    def __call__(self, inp: torch.Tensor):
        if inp.requires_grad:
            if inp.shape[-2] * inp.shape[-1] > self.max_pixels:
                raise OOM("simulated: CUDA out of memory")
            self.sizes.append(tuple(inp.shape[-2:]))
        return self.net(inp)

    def __getattr__(self, name):
        return getattr(self.net, name)


def capped(oracle: FeatureGradient, max_pixels: int) -> CappedNetwork:
    oracle.net = CappedNetwork(oracle.net, max_pixels)
    return oracle.net


@pytest.fixture(scope="module")
def cat(cat_bgr) -> torch.Tensor:
    return bgr_to_rgb01(cv2.resize(cat_bgr, (128, 96), interpolation=cv2.INTER_AREA))


def test_inversion_out_of_memory_continues_at_half_size_and_says_so(lite0, cat):
    reports = []
    with FeatureGradient(lite0, [LAYER]) as oracle:
        net = capped(oracle, 64 * 48)
        result = invert(cat, lite0, LAYER, InversionSettings(steps=6), progress=reports.append, oracle=oracle)
        target = oracle.objective.target
        expected = oracle.features(resize(cat, (48, 64)))[LAYER]
    assert result.fallbacks == ["out of GPU memory at 128x96: continued at 64x48"]
    assert result.size == (48, 64) and set(net.sizes) == {(48, 64)}
    assert [p.size for p in reports] == [(48, 64)] * 6  # every step was done, at the size that fitted
    assert result.steps_done == 6 and not result.cancelled
    assert result.rgb.shape == cat.shape  # resized back to the input
    assert torch.equal(target, expected)  # Φ0 recomputed from the input at the working size
    assert result.losses[-1] < result.losses[0]


def test_inversion_gives_up_with_one_line_below_the_floor(lite0, cat):
    with FeatureGradient(lite0, [LAYER]) as oracle:
        capped(oracle, 0)
        with pytest.raises(DeepvisError, match=r"^out of GPU memory even at 64x48: use a smaller --size"):
            invert(cat, lite0, LAYER, InversionSettings(steps=2), oracle=oracle)


def test_style_transfer_out_of_memory_recomputes_the_content_target_and_keeps_the_grams(lite0, cat):
    style = cat.flip(-1)
    with Stylist(lite0, style, StyleSettings(steps=4)) as stylist:
        grams = dict(stylist.style_targets)
        capped(stylist.oracle, 64 * 48)
        result = stylist.stylise(cat)
        objective = stylist.oracle.objective
        expected = stylist.oracle.features(resize(cat, (48, 64)))[stylist.content]
        assert objective.style_targets == grams  # means over positions: the same at any size
        assert torch.equal(objective.content_target, expected)
    assert result.fallbacks == ["out of GPU memory at 128x96: continued at 64x48"]
    assert result.size == (48, 64) and result.steps_done == 4 and result.rgb.shape == cat.shape


def test_texture_octaves_after_a_fallback_run_at_the_smaller_scale(lite0, cat):
    with Stylist(lite0, cat, StyleSettings(steps=2, octaves=2)) as stylist:
        net = capped(stylist.oracle, 64 * 64)
        reports = []
        result = stylist.texture(96, 96, progress=reports.append)
    # levels 64 and 96: the first fits, the second falls back to 48 (and would have scaled any after it)
    assert [p.size for p in reports] == [(64, 64), (64, 64), (48, 48), (48, 48)]
    assert net.sizes == [(64, 64), (64, 64), (48, 48), (48, 48)]
    assert result.fallbacks == ["out of GPU memory at 96x96: continued at 48x48"]
    assert result.size == (48, 48) and result.rgb.shape == (1, 3, 96, 96)


def test_invert_and_style_commands_say_at_which_size_they_ran(lite0, cat_bgr, tmp_path, monkeypatch):
    import toolbox.analysis.style as style_module
    import toolbox.jobs.invert as invert_job
    from toolbox.config import load_config
    from toolbox.jobs.style import run_style

    class CappedGradient(FeatureGradient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            capped(self, 64 * 48)

    monkeypatch.setattr(invert_job, "FeatureGradient", CappedGradient)
    monkeypatch.setattr(style_module, "FeatureGradient", CappedGradient)
    photo = tmp_path / "cat.png"
    cv2.imwrite(str(photo), cv2.resize(cat_bgr, (128, 96), interpolation=cv2.INTER_AREA))
    run = invert_job.run_invert(str(photo), tmp_path / "inv.png", load_config(), LAYER, 128,
                                InversionSettings(steps=2), progress=False)
    assert run.notes == [f"{LAYER}: out of GPU memory at 128x96: continued at 64x48, resized back to 128x96"]
    assert cv2.imread(str(run.written)).shape == (96, 128, 3)
    styled = run_style(str(photo), str(photo), tmp_path / "styled.png", load_config(), {"steps": 2}, progress=False)
    assert "out of GPU memory at 128x96: continued at 64x48, resized back to 128x96" in styled.notes
