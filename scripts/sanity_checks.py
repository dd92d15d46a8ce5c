"""Cascading model randomisation (Adebayo et al. 2018) for lite0's saliency maps, as a table.

Re-initialises lite0 from the logits down, one stage at a time (cumulatively, on a copy), and
prints the Spearman rank correlation between each method's map on the cat photo and the trained
model's map. Maps that explain the model fall towards 0; maps that stay near 1 are edge detectors
(the paper's finding for guided backprop and guided Grad-CAM). Pixel maps are compared as
max-over-channels |map|, Grad-CAM as its signed 7x7 map at _relu1.

    python scripts/sanity_checks.py [--stages 19] [--out sanity.md]   (writes sanity.md and sanity.json)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import skimage.data
import torch

from toolbox.analysis.saliency import saliency_map
from toolbox.analysis.saliency.sanity import cascading_randomisation, lite0_cascade
from toolbox.atomic import write_text
from toolbox.models import load_model
from toolbox.render.heatmap import signed_part

EGYPTIAN_CAT = 285
PIXEL_METHODS = ("gradient", "input_x_gradient", "guided", "deconvnet", "guided_gradcam")


def methods_for(layer: str) -> dict:
    def pixel(method):
        extra = {"layer": layer} if method == "guided_gradcam" else {}
        return lambda module, x: signed_part(saliency_map(module, x, method, EGYPTIAN_CAT, **extra))

    table = {m: pixel(m) for m in PIXEL_METHODS}
    table["gradcam"] = lambda module, x: saliency_map(module, x, "gradcam", EGYPTIAN_CAT, layer=layer, relu=False)
    return table


def markdown(rows, methods) -> str:
    lines = ["| randomised down to | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for row in rows:
        lines.append(f"| {row.randomised} | " + " | ".join(f"{row.correlations[m]:.2f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=None, help="only the first N cascade stages (default: all)")
    parser.add_argument("--out", default=None, help="write the table to this .md file and a .json beside it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_model("lite0")
    view = model.preprocess.model_view(np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1]))
    x = model.input_tensor(view)
    stages = lite0_cascade(model.module)[: args.stages]
    methods = methods_for("_relu1")
    rows = cascading_randomisation(model.module, x, stages, methods, seed=args.seed)
    table = markdown(rows, list(methods))
    print(table, end="")
    if args.out:
        out = Path(args.out)
        write_text(out, table)
        write_text(out.with_suffix(".json"), json.dumps(
            {"image": "skimage chelsea", "target": EGYPTIAN_CAT, "seed": args.seed,
             "rows": [{"randomised": r.randomised, **r.correlations} for r in rows]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
