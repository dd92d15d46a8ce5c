"""Score-CAM: masks shared between channels only where they are equal, and the map equal to
pytorch-grad-cam's on the bundled model with its real weights (BatchNorms folded for the masked
forwards)."""
from __future__ import annotations

import copy

import pytest
import torch

from toolbox.analysis.saliency import saliency_map
from toolbox.analysis.saliency.perturbation import distinct_masks
from toolbox.models.capture import forward_with_activations

gc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

CAT = 281  # tabby


def test_distinct_masks_groups_exactly_the_channels_with_equal_scaled_maps():
    generator = torch.Generator().manual_seed(0)
    free = torch.randn(4, 3, 3, generator=generator)
    bump = torch.zeros(3, 3)
    bump[1, 2] = 1.0
    channels = torch.stack([
        torch.zeros(3, 3), torch.zeros(3, 3),            # 0, 1: all zero -> black mask
        free[0], 3 * free[0] + 2,                        # 2, 3: one map up to a positive affine change
        -free[0],                                        # 4: its mirror: a different mask
        bump * 0.1, bump * 7.0,                          # 5, 6: active at the same single position
        free[1], free[2], free[3],                       # 7-9: all different
        free[1] + 1e-3 * free[2],                        # 10: close to 7 but not equal
        torch.full((3, 3), 6.0), torch.full((3, 3), 6.0),  # 11, 12: constant: masks are rounding noise
    ])
    representatives, group = distinct_masks(channels)
    same = lambda i, j: bool(group[i] == group[j])  # noqa: E731
    assert same(0, 1) and same(2, 3) and same(5, 6)
    assert not same(2, 4) and not same(7, 10) and not same(0, 5)
    assert not same(11, 12) and not same(0, 11)
    assert len(representatives) == len(set(group.tolist())) == 10
    assert all(int(group[r]) == g for g, r in enumerate(representatives.tolist()))
    assert all(int(r) == min(i for i in range(len(group)) if group[i] == g) for g, r in enumerate(representatives))


@pytest.mark.parametrize("layer,size", [("_blocks.10", 96), ("_relu1", 64)])
def test_scorecam_on_lite0_equals_pytorch_grad_cam(lite0, cat_bgr, layer, size):
    """Real weights and BatchNorm statistics (folded in our masked forwards, not in the reference's);
    ``_relu1`` has hundreds of all-zero channels sharing one forward, ``_blocks.10`` signed maps."""
    import cv2

    x = lite0.input_tensor(cv2.resize(lite0.preprocess.model_view(cat_bgr), (size, size), interpolation=cv2.INTER_AREA))
    ours = saliency_map(lite0, x, "scorecam", CAT, layer=layer, batch_size=64, relu=False)
    thawed = copy.deepcopy(lite0.module).requires_grad_(True)
    module = thawed.get_submodule(layer)
    cam = gc.ScoreCAM(model=thawed, target_layers=[module])
    cam.batch_size = 64
    try:
        _, captured = forward_with_activations(lite0.module, x, [layer])
        activations = captured[layer].numpy()
        weights = cam.get_cam_weights(x, module, [ClassifierOutputTarget(CAT)], activations, None)
    finally:
        cam.activations_and_grads.release()
    reference = torch.from_numpy((weights[:, :, None, None] * activations).sum(1)[0])
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))


def test_a_batch_that_runs_out_of_memory_is_halved_and_retried(random_model, monkeypatch):
    """A device that fits 8 masked images: the first batch (every mask, as on a GPU) fails, is
    halved until it fits, and the map equals one computed 8 at a time."""
    import toolbox.analysis.saliency.perturbation as perturbation

    model = random_model("resnet18")
    x = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    wanted = saliency_map(model, x, "scorecam", 3, layer="layer2.1", batch_size=8)
    scores_of, sizes = perturbation.target_scores_of, []

    def fits_eight(module, batch, target):
        sizes.append(len(batch))
        if len(batch) > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return scores_of(module, batch, target)

    monkeypatch.setattr(perturbation, "target_scores_of", fits_eight)
    got = saliency_map(model, x, "scorecam", 3, layer="layer2.1", batch_size=128)
    torch.testing.assert_close(got, wanted)
    assert sizes[0] > 64 and sizes[1:5] == [64, 32, 16, 8] and max(sizes[5:]) == 8  # sizes[0]: distinct masks

    monkeypatch.setattr(perturbation, "target_scores_of", lambda *args: (_ for _ in ()).throw(
        torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        saliency_map(model, x, "scorecam", 3, layer="layer2.1", batch_size=4)
