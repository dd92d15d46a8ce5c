"""The unit-image cache: same key -> same image without recomputing; new weights -> recomputed."""
from __future__ import annotations

import copy
import dataclasses
import threading

import numpy as np
import pytest

import toolbox.analysis.unit_cache as unit_cache
from toolbox.analysis.unit_cache import UnitCache, cached_unit_image, compute_unit_images, default_cache_root
from toolbox.analysis.unitvis import preset
from toolbox.models.registry import _state_dict_hash

LAYER = "_relu0"
SETTINGS = preset("yosinski", size=32, steps=3)


@pytest.fixture
def counted(monkeypatch):
    """Count the channels actually optimised."""
    computed: list[int] = []
    real = unit_cache.unit_images

    def counting(model, layer, channels, settings, **kw):  # noqa: ANN001
        computed.extend(channels)
        return real(model, layer, channels, settings, **kw)

    monkeypatch.setattr(unit_cache, "unit_images", counting)
    return computed


def test_same_key_returns_the_same_image_without_recomputing(lite0, tmp_path, counted):
    cache = UnitCache(tmp_path)
    seen = []
    first = compute_unit_images(lite0, LAYER, [1, 4], SETTINGS, progress=lambda d, t: seen.append((d, t)), cache=cache)
    assert counted == [1, 4] and seen == [(0, 2), (2, 2)]
    again = compute_unit_images(lite0, LAYER, [4, 1], SETTINGS, cache=cache)
    assert counted == [1, 4]  # nothing recomputed
    for c in (1, 4):
        assert first[c].shape == (32, 32, 3) and first[c].dtype == np.uint8
        assert np.array_equal(first[c], again[c])
        assert np.array_equal(cached_unit_image(lite0, LAYER, c, SETTINGS, cache), first[c])
    assert cached_unit_image(lite0, LAYER, 2, SETTINGS, cache) is None
    assert (cache.folder(lite0, LAYER, SETTINGS) / "settings.json").is_file()


def test_other_settings_or_new_weights_are_a_different_key(lite0, tmp_path, counted):
    cache = UnitCache(tmp_path)
    base = compute_unit_images(lite0, LAYER, [3], SETTINGS, cache=cache)[3]
    compute_unit_images(lite0, LAYER, [3], dataclasses.replace(SETTINGS, seed=5), cache=cache)
    assert counted == [3, 3]
    module = copy.deepcopy(lite0.module)
    module._conv_stem.weight.mul_(-1.0)  # new weights: the stem sees inverted colours
    changed = dataclasses.replace(lite0, module=module, weights_id=_state_dict_hash(module.state_dict()))
    assert changed.weights_id != lite0.weights_id
    assert cached_unit_image(changed, LAYER, 3, SETTINGS, cache) is None
    new = compute_unit_images(changed, LAYER, [3], SETTINGS, cache=cache)[3]
    assert counted == [3, 3, 3] and not np.array_equal(new, base)


def test_cancelled_run_returns_what_is_done_and_stores_nothing_half(lite0, tmp_path):
    cache = UnitCache(tmp_path)
    stop = threading.Event()
    stop.set()
    assert compute_unit_images(lite0, LAYER, [0, 1], SETTINGS, cancel=stop, cache=cache) == {}
    assert not any(tmp_path.rglob("*.png"))


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPVIS_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c" / "units"
    monkeypatch.delenv("DEEPVIS_CACHE")
    assert default_cache_root().parts[-3:] == (".cache", "deepvis", "units")
