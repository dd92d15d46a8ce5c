"""Config loading: defaults from YAML, user overlays, overrides, and one-line errors."""
from __future__ import annotations

import pytest

from toolbox.config import load_config
from toolbox.errors import DeepvisError


def test_defaults_load_into_dataclasses():
    config = load_config()
    assert config.model.name == "lite0"
    assert config.display.normalisation in ("channel", "layer")
    assert config.layout.panes["mosaic"].w > 0


def test_user_file_overrides_a_subset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("display:\n  colormap: viridis\nmodel:\n  layer: _blocks.3\n")
    config = load_config(path)
    assert config.display.colormap == "viridis" and config.model.layer == "_blocks.3"
    assert config.model.name == "lite0"


def test_overrides_win_over_the_user_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  name: resnet18\n")
    assert load_config(path, {"model.name": "vgg16", "model.layer": None}).model.name == "vgg16"


@pytest.mark.parametrize("text, message", [
    ("modle:\n  name: x\n", "unknown config key 'modle' (accepted: model, display, layout, analyze"),
    ("display:\n  normalization: layer\n", "unknown config key 'display.normalization' (accepted: normalisation"),
    ("display:\n  normalisation: pixel\n", "config key 'display.normalisation' must be one of channel, layer"),
    ("display:\n  top_k: many\n", "config key 'display.top_k' must be int"),
    ("layout:\n  panes:\n    input: [0, 0, 10]\n", "config key 'layout.panes.input' must be [x, y, width, height]"),
    ("model: [1, 2\n", "is not valid YAML"),
])
def test_bad_config_is_a_one_line_error_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DeepvisError) as info:
        load_config(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
