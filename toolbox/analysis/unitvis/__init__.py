"""Activation maximisation: synthetic images that excite one channel each (see optimise.py)."""
from toolbox.analysis.unitvis.optimise import (DEFAULT_PRESET, PRESETS, Cancelled, LayerCut, UnitVisSettings,
                                               preset, to_bgr_uint8, unit_images)

__all__ = ["DEFAULT_PRESET", "PRESETS", "Cancelled", "LayerCut", "UnitVisSettings", "preset", "to_bgr_uint8",
           "unit_images"]
