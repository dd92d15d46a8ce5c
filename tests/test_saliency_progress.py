"""Every expensive saliency method reports its progress after each batch, and stops when the
callback raises (the live window's Esc)."""
from __future__ import annotations

import pytest
import torch

from toolbox.analysis.saliency import METHODS, saliency_map

SIZE = 48
OPTIONS = {"smoothgrad": {"samples": 6, "batch_size": 2}, "squaregrad": {"samples": 6, "batch_size": 2},
           "vargrad": {"samples": 6, "batch_size": 2}, "integrated_gradients": {"steps": 6, "batch_size": 2},
           "occlusion": {"window": 16, "stride": 16, "batch_size": 3},
           "scorecam": {"batch_size": 16}, "ablationcam": {"batch_size": 16}}
LAYER = "layer2.1"  # 128 channels


class Stop(Exception):
    pass


def test_every_expensive_method_is_covered():
    assert {name for name, m in METHODS.items() if m.expensive} == set(OPTIONS)


@pytest.mark.parametrize("method", sorted(OPTIONS))
def test_progress_rises_to_one_and_a_raising_callback_stops_the_method(random_model, method):
    model = random_model("resnet18")
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    layer = LAYER if METHODS[method].needs_layer else None
    seen: list[float] = []
    saliency_map(model, x, method, 3, layer=layer, progress=seen.append, **OPTIONS[method])
    assert len(seen) >= 3 and seen == sorted(set(seen)) and seen[-1] == 1.0 and 0 < seen[0] < 1

    calls: list[float] = []

    def stop_at_second(done):
        calls.append(done)
        if len(calls) == 2:
            raise Stop

    with pytest.raises(Stop):
        saliency_map(model, x, method, 3, layer=layer, progress=stop_at_second, **OPTIONS[method])
    assert len(calls) == 2
