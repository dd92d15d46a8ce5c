"""Dream settings and the named presets that reproduce the references on our models.

The tutorial's tile 512 is not part of its preset: our core runs untiled whenever the octave
fits (same result, no halo overhead) and tiles only when asked (--tile) or short of memory.

Units: the image being dreamed is RGB in [0, 1] (the master copy, fp32); ``step_size`` and the
clip range are in those units. Both references' value spaces (google: 0-255 minus mean, TF2:
[-1, 1]) are uniform affine maps of RGB, so the normalised gradient has the same direction and
only the step size needs converting: google 1.5 / 255, TF2 0.01 / 2.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from toolbox.errors import DeepvisError
from toolbox.analysis.objectives.dream import TERMS, LayerTerm
from toolbox.analysis.optimise.octaves import FAMILIES

NORMS = ("mean-abs", "std")
COMPILE_MODES = ("none", "compile", "cudagraph")


@dataclass(frozen=True)
class DreamSettings:
    """Everything that decides a dream. ``terms`` empty means "the caller picks the layer"
    (``with_layers``); the presets leave it empty so the dream follows the selected layer.

    octaves / first_octave: family "detail" uses ``octaves`` levels ending at the input size;
    family "resize" uses levels n = first_octave .. first_octave + octaves - 1.
    tile: interior tile side in pixels, or None for "untiled when the octave fits" (auto);
    halo: pixels of context around each tile (rounded up to the layer stride).
    tile_batch: tiles per forward+backward, None = from free memory (CUDA) or all tiles (CPU).
    """

    terms: tuple[LayerTerm, ...] = ()
    term: str = "l2"  # the term kind with_layers gives each layer
    norm: str = "mean-abs"
    step_size: float = 1.5 / 255
    jitter: int = 32
    family: str = "detail"
    octaves: int = 4
    first_octave: int = 0
    scale: float = 1.4
    steps: int = 10
    clip: bool = True
    tile: int | None = None
    halo: int = 64
    tile_batch: int | None = None
    seed: int = 0
    compile: str = "none"
    guide: object | None = field(default=None, compare=False)  # (H, W, 3) uint8 BGR guide image

    def __post_init__(self):
        checks = [
            (self.norm in NORMS, f"dream norm must be one of {', '.join(NORMS)}"),
            (self.family in FAMILIES, f"dream octave family must be one of {', '.join(FAMILIES)}"),
            (self.octaves >= 1, "--octaves must be 1 or more"),
            (self.scale > 1.0, "--scale must be above 1 (e.g. 1.4)"),
            (self.steps >= 0, "--steps must be 0 or more"),
            (self.step_size > 0, "--step-size must be positive (e.g. 0.006)"),
            (self.jitter >= 0, "jitter must be 0 or more pixels"),
            (self.tile is None or self.tile >= 16, "--tile must be at least 16 pixels (or omit it)"),
            (self.halo >= 0, "halo must be 0 or more pixels"),
            (self.tile_batch is None or self.tile_batch >= 1, "tile batch must be 1 or more"),
            (self.compile in COMPILE_MODES, f"compile must be one of {', '.join(COMPILE_MODES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise DeepvisError(message)
        if self.term not in TERMS:
            raise DeepvisError(f"dream objective '{self.term}' unknown: use one of {', '.join(TERMS)}")
        for term in self.terms:
            if term.kind not in TERMS:
                raise DeepvisError(f"dream objective '{term.kind}' unknown: use one of {', '.join(TERMS)}")
            if term.kind in ("channel", "logit") and term.channel is None:
                raise DeepvisError(f"dream objective '{term.kind}' needs a channel/class index (e.g. layer:1.0:{term.kind}:7)")
            if term.kind == "guide" and self.guide is None:
                raise DeepvisError("dream objective 'guide' needs a guide image")

    @property
    def total_steps(self) -> int:
        return self.octaves * self.steps

    def replace(self, **changes) -> "DreamSettings":
        return dataclasses.replace(self, **changes)

    def with_layers(self, layers, kind: str | None = None) -> "DreamSettings":
        """Dream on ``layers`` (names, (name, weight) pairs or LayerTerms); names get this preset's term kind."""
        kind = kind or self.term
        terms = []
        for item in layers:
            if isinstance(item, LayerTerm):
                terms.append(item)
                continue
            name, weight = (item, 1.0) if isinstance(item, str) else item
            terms.append(LayerTerm(name, float(weight), kind))
        return self.replace(terms=tuple(terms))


CLASSIC = DreamSettings(term="l2", norm="mean-abs", step_size=1.5 / 255, jitter=32, family="detail", octaves=4, scale=1.4,
                        steps=10)
TF_TUTORIAL = DreamSettings(term="mean", norm="std", step_size=0.01 / 2, jitter=512, family="resize", octaves=5, first_octave=-2,
                            scale=1.3, steps=100)
PRESETS = {"classic": CLASSIC, "tf-tutorial": TF_TUTORIAL}

# Layers each preset dreams on by default, per model: the references' layers where the model is
# the reference's (torchvision names), and for lite0 the analogous depth (stride 16, the stage
# that GoogLeNet's inception4c and InceptionV3's mixed3/mixed5 sit in).
DEFAULT_LAYERS = {
    ("classic", "lite0"): ("_blocks.8",),
    ("tf-tutorial", "lite0"): ("_blocks.6", "_blocks.9"),
    ("classic", "googlenet"): ("inception4c",),
    ("tf-tutorial", "googlenet"): ("inception4a", "inception4c"),
    ("classic", "inception_v3"): ("Mixed_6a",),
    ("tf-tutorial", "inception_v3"): ("Mixed_6a", "Mixed_6c"),
}


def preset(name: str) -> DreamSettings:
    try:
        return PRESETS[name]
    except KeyError:
        raise DeepvisError(f"unknown dream preset '{name}': use one of {', '.join(PRESETS)}") from None


def default_layers(preset_name: str, model_name: str, visualisable: list[str]) -> tuple[str, ...]:
    """The preset's layers for this model, or the layer two thirds deep for other models."""
    return DEFAULT_LAYERS.get((preset_name, model_name), (visualisable[(2 * len(visualisable)) // 3],))
