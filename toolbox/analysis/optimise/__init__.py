"""The one input-optimisation engine of deepvis (DeepDream, unit pictures, inversion, style).

param.py (what is optimised: Pixels, PixelImage, FourierImage), transforms.py (jitter, pad, scale,
rotate), octaves.py (pyramids), tiling.py (tiled gradients and the out-of-memory policy),
steps.py (normalised ascent, Adam), progress.py (progress, cancel, seed), device.py (bf16 with an
fp32 master image, input normalisation), network.py (the model cut at the deepest layer read),
features.py (the gradient oracle for objectives on activations), loop.py (the loop itself).
Objectives live in analysis/objectives/.
"""
from toolbox.analysis.optimise.loop import Optimiser, ascent_step
from toolbox.analysis.optimise.progress import Cancelled, Progress, seeded

__all__ = ["Cancelled", "Optimiser", "Progress", "ascent_step", "seeded"]
