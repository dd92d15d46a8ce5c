"""Every saliency method's map for one image, written as overlay PNGs plus a JSON index
(used by deepvis inspect)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from toolbox.analysis.saliency import METHODS, as_target, method_info, saliency_map
from toolbox.analysis.saliency.targets import ClassTarget, resolve_top1
from toolbox.atomic import write_image, write_json
from toolbox.errors import DeepvisError
from toolbox.models.registry import LoadedModel
from toolbox.render.heatmap import HeatmapStyle, method_style, render_heatmap
from toolbox.render.text import titled_image


def write_saliency_maps(model: LoadedModel, view: np.ndarray, out_dir: str | Path, target=None,
                        layer: str | None = None, style: HeatmapStyle | None = None,
                        methods: tuple[str, ...] = tuple(METHODS)) -> dict[str, Path]:
    """For model view ``view`` (S, S, 3) uint8 BGR, write ``out_dir``/NN_<method>.png (heatmap over
    the view) for each method and ``out_dir``/saliency.json (target, Grad-CAM layer, time per map).

    target: as saliency_map (None: the top-1 class, resolved once so all maps explain the same class).
    layer: Grad-CAM's layer (None: the deepest visualisable layer).
    style: one style for every map (None: each method's own, ``method_style``).
    """
    if model.module is None:  # an ONNX graph: no gradients through onnxruntime
        return {}
    out_dir = Path(out_dir)
    x = model.input_tensor(view)
    target = as_target(target, model.categories)
    if isinstance(target, ClassTarget) and target.index is None:
        import torch

        with torch.inference_mode():
            target = resolve_top1(target, model.module(x))
    layer = layer or model.layers[-1]
    written: dict[str, Path] = {}
    timings: dict[str, float] = {}
    styles = {m: style or method_style(m) for m in methods}
    for i, method in enumerate(methods):
        start = time.perf_counter()
        saliency = saliency_map(model, x, method, target, layer=layer if METHODS[method].needs_layer else None)
        timings[method] = round((time.perf_counter() - start) * 1000, 1)
        image = titled_image(render_heatmap(saliency, view, styles[method]),
                             f"{METHODS[method].title}: {target.describe(model.categories)}", scale=0.4)
        written[f"saliency/{method}"] = write_image(out_dir / f"{i:02d}_{method}.png", image)
    written["saliency/index"] = write_json(out_dir / "saliency.json", {
        "target": target.describe(model.categories),
        "gradcam_layer": layer,
        "maps": {m: {"file": written[f"saliency/{m}"].name, "ms": timings[m], "sign": styles[m].sign,
                     "colormap": styles[m].diverging if styles[m].sign == "signed" else styles[m].colormap,
                     "clip_percentile": styles[m].clip_percentile} for m in methods},
    })
    return written


def check_saliency_choice(model: LoadedModel, method: str) -> str:
    """The method name if ``model`` can run it, else a DeepvisError naming the fix."""
    method_info(method)
    if model.module is None:
        raise DeepvisError(f"--saliency {method} needs a PyTorch model: drop --saliency or use --backend torch")
    return method


def saliency_overlay(model: LoadedModel, view: np.ndarray, method: str, style: HeatmapStyle | None = None) -> np.ndarray:
    """(S, S, 3) uint8 BGR: ``method``'s map for the top-1 class over the model view (Grad-CAM at the
    deepest visualisable layer), in ``style`` (None: the method's own); the annotated video shows it in
    the zoom pane."""
    layer = model.layers[-1] if METHODS[method].needs_layer else None
    saliency = saliency_map(model, model.input_tensor(view), method, None, layer=layer)
    return render_heatmap(saliency, view, style or method_style(method))
