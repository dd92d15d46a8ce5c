"""Activation maximisation on lite0: the optimised images really are each channel's favourite inputs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from toolbox.analysis.unitvis import Cancelled, LayerCut, preset, to_bgr_uint8, unit_images
from toolbox.analysis.objectives.unit import activation_matrix, channel_values
from toolbox.errors import DeepvisError
from toolbox.models.capture import has_hooks

LAYER = "_blocks.1"  # 24 channels, receptive field 11 px: shallow and cheap
SIZE = 64
CHANNELS = [0, 3, 5, 9, 14, 20]
NATURAL = ["astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket",
           "logo", "brick", "camera", "clock", "coins", "grass", "gravel", "horse", "moon", "page", "text",
           "microaneurysms", "shepp_logan_phantom"]


def _natural_views(size: int) -> np.ndarray:
    """20 skimage pictures as (20, size, size, 3) uint8 BGR centre crops."""
    views = []
    for name in NATURAL:
        img = np.asarray(getattr(skimage.data, name)())
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.dtype != np.uint8:
            img = (255 * (img - img.min()) / max(float(img.max() - img.min()), 1e-9)).astype(np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = np.ascontiguousarray(img[:, :, 2::-1])  # RGB(A) -> BGR
        side = min(img.shape[:2])
        top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        views.append(cv2.resize(img[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(views)


def _layer_output(model, rgb01: torch.Tensor) -> torch.Tensor:
    with LayerCut(model.module, LAYER) as cut, torch.no_grad():
        return cut(model.preprocess.normalise(rgb01))


@pytest.fixture(scope="module", params=["yosinski", "lucid"])
def optimised(request, lite0):
    settings = preset(request.param, size=SIZE, steps=32)
    return settings, unit_images(lite0, LAYER, CHANNELS, settings)


def test_optimised_images_are_valid_rgb(optimised):
    _, images = optimised
    assert images.shape == (len(CHANNELS), 3, SIZE, SIZE) and images.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1


def test_each_image_excites_its_channel_more_than_20_natural_images(optimised, lite0):
    settings, images = optimised
    target = torch.tensor(CHANNELS)
    own = channel_values(_layer_output(lite0, images), target, settings.objective)
    views = _natural_views(SIZE)
    natural_act = _layer_output(lite0, torch.from_numpy(views[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255)
    natural = activation_matrix(natural_act, target, settings.objective)  # (20, K)
    assert natural.shape == (20, len(CHANNELS))
    assert torch.all(own > natural.max(dim=0).values), (own, natural.max(dim=0).values)


def test_each_channel_prefers_its_own_image_over_its_neighbours_images(optimised, lite0):
    settings, images = optimised
    matrix = activation_matrix(_layer_output(lite0, images), torch.tensor(CHANNELS), settings.objective)
    diagonal = matrix.diagonal()
    off = matrix.clone()
    off.fill_diagonal_(-torch.inf)
    assert torch.all(diagonal > off.max(dim=0).values), matrix  # column k: channel k on every image


def test_same_seed_same_images_and_batch_does_not_change_a_channel(lite0):
    settings = preset("lucid", size=48, steps=4)
    batch = unit_images(lite0, LAYER, [2, 7], settings)
    again = unit_images(lite0, LAYER, [2, 7], settings)
    alone = unit_images(lite0, LAYER, [7], settings)
    assert torch.equal(batch, again)
    assert torch.allclose(batch[1], alone[0], atol=1e-4)
    other_seed = unit_images(lite0, LAYER, [7], preset("lucid", size=48, steps=4, seed=1))
    assert not torch.allclose(other_seed, alone, atol=1e-2)


def test_forward_stops_at_the_layer_and_hooks_are_removed(lite0):
    calls = []
    deeper = lite0.module.get_submodule("_blocks.2")
    handle = deeper.register_forward_hook(lambda *a: calls.append(1))
    try:
        unit_images(lite0, LAYER, [0], preset("yosinski", size=32, steps=2))
    finally:
        handle.remove()
    assert calls == []
    assert not has_hooks(lite0.module)


def test_cancel_stops_before_the_next_step(lite0):
    steps = []
    with pytest.raises(Cancelled):
        unit_images(lite0, LAYER, [0], preset("yosinski", size=32, steps=50), on_step=lambda s, n: steps.append(s),
                    cancel=lambda: len(steps) >= 3)
    assert steps == [1, 2, 3]
    assert not has_hooks(lite0.module)


def test_bad_channel_and_bad_settings_are_user_errors(lite0):
    with pytest.raises(DeepvisError, match="channels 0..23"):
        unit_images(lite0, LAYER, [24], preset("yosinski", size=32, steps=1))
    with pytest.raises(DeepvisError, match="pixel"):
        preset("lucid", l2_decay=0.1)
    with pytest.raises(DeepvisError, match="unknown unit-vis preset"):
        preset("fancy")


def test_to_bgr_uint8_flips_channels_and_rounds():
    rgb = torch.zeros(1, 3, 1, 2)
    rgb[0, 0, 0, 0] = 1.0  # red
    rgb[0, 2, 0, 1] = 0.5  # half blue
    out = to_bgr_uint8(rgb)
    assert out.shape == (1, 1, 2, 3) and out.dtype == np.uint8
    assert out[0, 0, 0].tolist() == [0, 0, 255] and out[0, 0, 1].tolist() == [128, 0, 0]


def test_layer_cut_leaves_other_threads_forwards_alone(lite0):
    import threading

    x = torch.zeros(1, 3, 32, 32)
    results = {}
    with LayerCut(lite0.module, LAYER) as cut:
        worker = threading.Thread(target=lambda: results.setdefault("logits", lite0.module(x)))
        worker.start()
        worker.join()
        assert cut(x).shape[1] == 24
    assert results["logits"].shape == (1, 1000)  # the other thread's forward ran to the end
