"""Settings: configs/default.yaml (+ a user file, + command-line overrides) -> validated dataclasses.

The YAML files are the one source of default values; the dataclasses only say which keys
exist and what types they take. Any unknown key or wrong type is a DeepvisError that names
the key and the accepted values.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from toolbox.errors import DeepvisError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


@dataclass(frozen=True)
class Rect:
    """A pane's place in the window, in pixels (toolbox.render.layout.compose draws into it)."""
    x: int
    y: int
    w: int
    h: int

    @property
    def size(self) -> tuple[int, int]:
        """(height, width), the order numpy shapes use."""
        return self.h, self.w


@dataclass(frozen=True)
class ModelConfig:
    name: str
    weights: Optional[str]
    layer: Optional[str]
    device: str
    channels_last: bool
    backend: Literal["torch", "onnx", "auto"]
    labels: Optional[str]
    preprocess: Optional[str]


@dataclass(frozen=True)
class DisplayConfig:
    normalisation: Literal["channel", "layer"]
    colormap: Literal["none", "viridis", "inferno", "magma", "jet", "turbo"]
    top_k: int


@dataclass(frozen=True)
class LayoutConfig:
    width: int
    height: int
    font_scale: float
    panes: dict[str, Rect]


@dataclass(frozen=True)
class AnalyzeConfig:
    every: int
    max_frames: Optional[int]


@dataclass(frozen=True)
class LiveConfig:
    window_title: str
    keys: str
    torch_threads: int
    fast_move: int
    seek_seconds: float
    stale_after_ms: int
    reconnect_min_s: float
    reconnect_max_s: float
    snapshot_dir: str
    record_dir: str
    record_fps: float
    mirror_camera: bool
    zoom: Literal["channel", "overlay", "input"]
    stale_colour: str
    accent_colour: str


@dataclass(frozen=True)
class UnitsConfig:
    preset: Literal["lucid", "yosinski"]
    size: int
    steps: int


@dataclass(frozen=True)
class DreamConfig:
    preset: Literal["classic", "tf-tutorial"]
    steps: Optional[int]
    octaves: Optional[int]
    max_side: int
    live_steps: int
    live_max_side: int


@dataclass(frozen=True)
class StyleConfig:
    styles_dir: str  # "" : the style images shipped in toolbox/styles
    invert_steps: int
    invert_max_side: int
    steps: int
    live_steps: int
    live_max_side: int


@dataclass(frozen=True)
class SaliencyConfig:
    placement: Literal["overlay", "side"]
    alpha: float
    smooth_sigma: float
    refresh_s: float
    rise_masks: int


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    display: DisplayConfig
    layout: LayoutConfig
    analyze: AnalyzeConfig
    live: LiveConfig
    units: UnitsConfig
    dream: DreamConfig
    saliency: SaliencyConfig
    style: StyleConfig
    threads: Optional[int]  # CPU threads of torch, onnxruntime and OpenCV; None: toolbox.cpu_threads decides

    def __post_init__(self):
        if self.threads is not None and self.threads < 1:
            raise DeepvisError(f"threads must be 1 or more, not {self.threads} (--threads N or config key 'threads'; "
                               "null: every usable core)")


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "null" for a in typing.get_args(tp))
    if tp is Rect:
        return "[x, y, width, height]"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, key: str):
    """Check ``value`` against type ``tp`` (dataclass, Literal, Optional, dict, int, ...)."""
    origin = typing.get_origin(tp)
    bad = DeepvisError(f"config key '{key}' must be {_type_name(tp)}, not {value!r}")
    if dataclasses.is_dataclass(tp) and tp is not Rect:
        if not isinstance(value, dict):
            raise bad
        return _build(tp, value, key + ".")
    if tp is Rect:
        if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) and v >= 0 for v in value)):
            raise bad
        return Rect(*value)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _convert(value, inner, key)
    if origin is dict:
        _, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            raise bad
        return {str(k): _convert(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise bad
    if tp is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # YAML reads `layer: 5` as a number; the command line's --layer 5 is text
    if not isinstance(value, tp):
        raise bad
    return value


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise DeepvisError(f"unknown config key '{prefix}{key}' (accepted: {', '.join(names)})")
    missing = [n for n in names if n not in data]
    if missing:
        raise DeepvisError(f"config is missing key '{prefix}{missing[0]}'")
    return cls(**{n: _convert(data[n], hints[n], prefix + n) for n in names})


def _merge(base: dict, override: dict, prefix: str = "") -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in merged:
            raise DeepvisError(f"unknown config key '{prefix}{key}' (accepted: {', '.join(base)})")
        if isinstance(merged[key], dict) and isinstance(value, dict) and key != "panes":
            merged[key] = _merge(merged[key], value, f"{prefix}{key}.")
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DeepvisError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise DeepvisError(f"config file {path} is not a text file: give a YAML file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise DeepvisError(f"config file {path}{where} is not valid YAML") from None
    if not isinstance(data, dict):
        raise DeepvisError(f"config file {path} must hold a mapping of keys")
    return data


def load_config(user_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults, then the user's file, then ``overrides`` ({"model.layer": "_blocks.4"}; None values skipped)."""
    data = read_yaml(DEFAULT_CONFIG)
    if user_file is not None:
        data = _merge(data, read_yaml(user_file))
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        nested: dict = {leaf: value}
        for parent in reversed(parents):
            nested = {parent: nested}
        data = _merge(data, nested)
    return _build(Config, data)
