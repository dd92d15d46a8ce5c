"""Every saliency method's map for one image, written as overlay PNGs, one labelled sheet and a
JSON index, optionally with each map's faithfulness metrics (used by deepvis inspect)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from toolbox.analysis.saliency import METHODS, as_target, method_info, saliency_map
from toolbox.analysis.saliency.metrics import HIGHER_IS_BETTER, faithfulness, ranking
from toolbox.analysis.saliency.targets import ClassTarget, resolve_top1
from toolbox.atomic import write_image, write_json, write_text
from toolbox.errors import DeepvisError
from toolbox.models.registry import LoadedModel
from toolbox.render.heatmap import HeatmapStyle, method_style, render_heatmap
from toolbox.render.montage import captioned_tile, tile_sheet
from toolbox.render.text import titled_image


def write_saliency_maps(model: LoadedModel, view: np.ndarray, out_dir: str | Path, target=None,
                        layer: str | None = None, style: HeatmapStyle | None = None,
                        methods: Sequence[str] = tuple(METHODS), metrics: Sequence[str] = (),
                        progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """For model view ``view`` (S, S, 3) uint8 BGR, write ``out_dir``/NN_<method>.png (heatmap over
    the view) for each method, ``out_dir``/sheet.png (every map in one labelled sheet) and
    ``out_dir``/saliency.json (target, CAM layer, time per map). With ``metrics`` (names from
    toolbox.analysis.saliency.metrics.METRICS) also each map's faithfulness, in saliency.json and
    in ``out_dir``/metrics.md and metrics.json (method x metric table and the ranking).

    target: as saliency_map (None: the top-1 class, resolved once so all maps explain the same class).
    layer: the CAMs' layer (None: the deepest visualisable layer).
    style: one style for every map (None: each method's own, ``method_style``).
    progress: called with each method's name before it runs.
    """
    if model.module is None:  # an ONNX graph: no gradients through onnxruntime
        return {}
    out_dir = Path(out_dir)
    x = model.input_tensor(view)
    target = as_target(target, model.categories)
    if isinstance(target, ClassTarget) and target.index is None:
        with torch.inference_mode():
            target = resolve_top1(target, model.module(x))
    layer = layer or model.layers[-1]
    written: dict[str, Path] = {}
    timings: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    styles = {m: style or method_style(m) for m in methods}
    tiles = []
    for i, method in enumerate(methods):
        if progress is not None:
            progress(method)
        start = time.perf_counter()
        saliency = saliency_map(model, x, method, target, layer=layer if METHODS[method].needs_layer else None)
        timings[method] = round((time.perf_counter() - start) * 1000, 1)
        overlay = render_heatmap(saliency, view, styles[method])
        image = titled_image(overlay, f"{METHODS[method].title}: {target.describe(model.categories)}", scale=0.4)
        written[f"saliency/{method}"] = write_image(out_dir / f"{i:02d}_{method}.png", image)
        if metrics:
            scores[method] = faithfulness(model.module, x, saliency, target, metrics).values
        tiles.append(captioned_tile(overlay, _caption(method, timings[method], layer, scores.get(method)), SHEET_TILE))
    what = target.describe(model.categories)
    written["saliency/sheet"] = write_image(out_dir / "sheet.png", tile_sheet(
        tiles, SHEET_TILE, title=f"{model.name}: every saliency method for {what} (CAMs at {layer})"))
    index = {
        "target": what,
        "gradcam_layer": layer,
        "sheet": "sheet.png",
        "maps": {m: {"file": written[f"saliency/{m}"].name, "ms": timings[m], "title": METHODS[m].title,
                     "description": METHODS[m].description, "expensive": METHODS[m].expensive,
                     "sign": styles[m].sign,
                     "colormap": styles[m].diverging if styles[m].sign == "signed" else styles[m].colormap,
                     "clip_percentile": styles[m].clip_percentile, **({"metrics": scores[m]} if metrics else {})}
                 for m in methods},
    }
    written["saliency/index"] = write_json(out_dir / "saliency.json", index)
    if metrics:
        table = metrics_table(scores, metrics)
        written["saliency/metrics"] = write_text(out_dir / "metrics.md", table.markdown)
        written["saliency/metrics_json"] = write_json(out_dir / "metrics.json", {
            "target": what, "layer": layer, "metrics": list(metrics),
            "higher_is_better": {k: HIGHER_IS_BETTER[k] for k in metrics},
            "table": scores, "ranking": [{"method": m, "mean_rank": r} for m, r in table.ranking]})
    return written


SHEET_TILE = 192


def _caption(method: str, ms: float, layer: str, scores: dict[str, float] | None) -> list[str]:
    info = METHODS[method]
    lines = [info.title + (" (expensive)" if info.expensive else ""),
             f"{ms:.0f} ms" + (f", {layer}" if info.needs_layer else "")]
    if scores:
        lines.append(" ".join(f"{SHORT[k]} {v:.2f}" for k, v in scores.items() if k in ("deletion", "insertion")))
    return lines


SHORT = {"deletion": "del", "insertion": "ins", "road": "ROAD", "average_drop": "AD", "increase_in_confidence": "IC"}


@dataclass(frozen=True)
class MetricsTable:
    markdown: str
    ranking: list[tuple[str, float]]


def metrics_table(scores: dict[str, dict[str, float]], metrics: Sequence[str]) -> MetricsTable:
    """Markdown method x metric table (arrows say which way is better), rows best first, plus the
    mean-rank column."""
    order = ranking(scores)
    head = "| rank | method | " + " | ".join(f"{k} {'↑' if HIGHER_IS_BETTER[k] else '↓'}" for k in metrics) + \
           " | mean rank |"
    lines = [head, "|---:|---|" + "---:|" * len(metrics) + "---:|"]
    for n, (method, rank) in enumerate(order, 1):
        cells = " | ".join(f"{scores[method][k]:.3f}" for k in metrics)
        lines.append(f"| {n} | {method} | {cells} | {rank:.2f} |")
    return MetricsTable("\n".join(lines) + "\n", order)


def check_saliency_choice(model: LoadedModel, method: str) -> str:
    """The method name if ``model`` can run it, else a DeepvisError naming the fix."""
    method_info(method)
    if model.module is None:
        raise DeepvisError(f"--saliency {method} needs a PyTorch model: drop --saliency or use --backend torch")
    return method


def top1_saliency(model: LoadedModel, view: np.ndarray, method: str):
    """(x (1, 3, S, S), resolved top-1 ClassTarget, raw map) for the model view ``view``, CAMs at the
    deepest visualisable layer."""
    x = model.input_tensor(view)
    with torch.inference_mode():
        target = resolve_top1(ClassTarget(), model.module(x))
    layer = model.layers[-1] if METHODS[method].needs_layer else None
    return x, target, saliency_map(model, x, method, target, layer=layer)


def saliency_overlay(model: LoadedModel, view: np.ndarray, method: str, style: HeatmapStyle | None = None,
                     saliency: torch.Tensor | None = None) -> np.ndarray:
    """(S, S, 3) uint8 BGR: ``method``'s map (``saliency``, or computed: top-1 class, CAMs at the deepest
    visualisable layer) over the model view, in ``style`` (None: the method's own); the annotated
    video shows it in the zoom pane."""
    if saliency is None:
        saliency = top1_saliency(model, view, method)[2]
    return render_heatmap(saliency, view, style or method_style(method))
