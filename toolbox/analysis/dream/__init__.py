"""DeepDream: gradient ascent on the input over an octave pyramid, tiled or untiled (reference:
shared/reference/deepdream.md). ``dream()`` for one image, ``LiveDreamer`` for video/live."""
from toolbox.analysis.dream.core import DreamEngine, DreamProgress, DreamResult, dream
from toolbox.analysis.objectives.dream import LayerTerm
from toolbox.analysis.dream.presets import PRESETS, DreamSettings, default_layers, preset
from toolbox.analysis.dream.temporal import LiveDreamer, live_settings

__all__ = ["DreamEngine", "DreamProgress", "DreamResult", "DreamSettings", "LayerTerm", "LiveDreamer", "PRESETS", "default_layers",
           "dream", "live_settings", "preset"]
