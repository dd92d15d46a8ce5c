"""Each Yosinski et al. regulariser and each transform, checked on tiny tensors with hand-computed values."""
from __future__ import annotations

import torch

from toolbox.analysis.unitvis import regularisers as reg
from toolbox.analysis.optimise.param import COLOR_CORRELATION_NORMALISED, FourierImage, decorrelate_colour, spectrum_scale
from toolbox.analysis.optimise.transforms import affine_warp, crop_offset, pad_grey


def test_l2_decay_scales_towards_grey():
    x = torch.tensor([[[[0.4, -0.2]]]])
    assert torch.allclose(reg.l2_decay(x, 0.25), torch.tensor([[[[0.3, -0.15]]]]))


def test_gaussian_kernel_sums_to_one_and_matches_formula():
    k = reg.gaussian_kernel1d(1.0)
    assert k.numel() == 7 and abs(float(k.sum()) - 1) < 1e-6
    assert torch.allclose(k[3] / k[4], torch.tensor(1 / torch.exp(torch.tensor(-0.5)).item()))


def test_blur_keeps_constants_and_spreads_an_impulse_by_the_kernel():
    const = torch.full((1, 3, 9, 9), 0.3)
    assert torch.allclose(reg.gaussian_blur(const, 1.0), const, atol=1e-6)
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1.0
    k = reg.gaussian_kernel1d(0.8)
    expected = torch.zeros(9, 9)
    r = k.numel() // 2
    expected[4 - r : 5 + r, 4 - r : 5 + r] = k[:, None] * k[None, :]
    assert torch.allclose(reg.gaussian_blur(x, 0.8)[0, 0], expected, atol=1e-7)


def test_blur_every_k_blurs_only_on_every_kth_step():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    applied = [not torch.equal(reg.blur_every(x, step, 3, 1.0), x) for step in range(7)]
    assert applied == [False, False, True, False, False, True, False]
    assert torch.equal(reg.blur_every(x, 2, 0, 1.0), x)


def test_clip_small_norm_sets_the_lowest_percentile_pixels_to_grey():
    # Four pixels with colour norms 1, 2, 3, 4 (single non-zero channel each).
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0, 0, 0], x[0, 1, 0, 1], x[0, 2, 1, 0], x[0, 0, 1, 1] = 1.0, -2.0, 3.0, 4.0
    out = reg.clip_small_norm(x, 50.0)  # 50th percentile of (1, 2, 3, 4) = 2.5
    assert out.norm(dim=1).flatten().tolist() == [0.0, 0.0, 3.0, 4.0]
    assert torch.equal(reg.clip_small_norm(x, 0.0), x)


def test_clip_small_contribution_uses_abs_x_times_gradient_summed_over_colours():
    x = torch.ones(1, 3, 1, 4)
    grad = torch.zeros(1, 3, 1, 4)
    grad[0, :, 0, 0] = torch.tensor([1.0, 1.0, -1.0])  # contribution |1| = 1
    grad[0, 0, 0, 1] = -5.0  # |-5| = 5: large although negative
    grad[0, 1, 0, 2] = 0.5  # 0.5
    grad[0, 2, 0, 3] = 3.0  # 3
    out = reg.clip_small_contribution(x, grad, 50.0)  # median of (1, 5, 0.5, 3) = 2
    kept = (out.abs().sum(dim=1) > 0).flatten().tolist()
    assert kept == [False, True, False, True]


def test_clip_percentiles_are_per_image():
    x = torch.stack([torch.arange(4.0).view(1, 2, 2).expand(3, 2, 2), 10 * torch.arange(4.0).view(1, 2, 2).expand(3, 2, 2)])
    out = reg.clip_small_norm(x, 50.0)
    assert ((out.abs().sum(dim=1) > 0).flatten(1).sum(dim=1)).tolist() == [2, 2]


def test_spectrum_scale_is_one_over_frequency_with_floor():
    s = spectrum_scale(4, 4, 1.0)
    assert s.shape == (4, 3)
    assert s[0, 0] == 4.0  # DC: floor 1/max(h, w)
    assert torch.isclose(s[0, 1], torch.tensor(4.0))  # f = 0.25
    assert torch.isclose(s[0, 2], torch.tensor(2.0))  # f = 0.5
    assert torch.isclose(s[1, 1], torch.tensor(1 / (2 * 0.25**2) ** 0.5))


def test_decorrelate_colour_applies_the_normalised_lucid_matrix():
    v = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(decorrelate_colour(v).flatten(), COLOR_CORRELATION_NORMALISED[:, 0])
    assert torch.isclose(COLOR_CORRELATION_NORMALISED.norm(dim=0).max(), torch.tensor(1.0))


def test_fourier_image_is_in_unit_range_and_seeded():
    make = lambda: FourierImage([torch.Generator().manual_seed(s) for s in (1, 2)], 16)  # noqa: E731
    a, b = make().image().detach(), make().image().detach()
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)
    assert float(a.min()) > 0 and float(a.max()) < 1
    assert not torch.equal(a[0], a[1])


def test_affine_warp_identity_and_integer_shift_are_exact():
    x = torch.rand(2, 3, 8, 8)
    one, zero = torch.ones(2), torch.zeros(2)
    assert torch.allclose(affine_warp(x, one, zero, torch.zeros(2, 2)), x, atol=1e-6)
    shifted = affine_warp(x, one, zero, torch.tensor([[2.0, 1.0], [0.0, 0.0]]))
    assert torch.allclose(shifted[0, :, 1:, 2:], x[0, :, :-1, :-2], atol=1e-6)  # content moved right 2, down 1
    assert torch.allclose(shifted[0, :, 0, :], torch.full((3, 8), 0.5))  # grey comes in


def test_affine_warp_rotates_quarter_turn():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 4] = 1.0  # right of centre
    out = affine_warp(x, torch.ones(1), torch.tensor([90.0]), torch.zeros(1, 2), fill=0.0)
    assert out[0, 0].argmax().item() in (4 * 5 + 2, 0 * 5 + 2)  # moved to below or above centre
    assert torch.isclose(out.sum(), torch.tensor(1.0), atol=1e-5)


def test_pad_and_crop_offsets():
    x = torch.rand(1, 3, 4, 4)
    p = pad_grey(x, 2)
    assert p.shape == (1, 3, 8, 8) and torch.equal(p[..., 2:6, 2:6], x) and float(p[0, 0, 0, 0]) == 0.5
    assert torch.equal(crop_offset(p, 4, 2, 2), x)
