"""Cascading model randomisation (Adebayo et al. 2018) for every saliency method on lite0, as a table.

Re-initialises lite0 from the logits down, one stage at a time (cumulatively, on a copy), and
prints the Spearman rank correlation between each method's map on the cat photo and the trained
model's map, then which methods fail: a map that explains the model falls towards 0 once the top
layers are destroyed; one that stays above 0.5 (CHANGED_BELOW) is an edge detector. Guided
backprop, deconvnet and guided Grad-CAM are expected to fail (the paper's finding: their backward
rules reconstruct the image whatever the weights). Pixel maps are compared as max-over-channels
|map|, the CAMs as their signed maps at _relu1 (before the ReLU), the rest as they come.

    python scripts/sanity_checks.py [--stages 19] [--stride 3] [--methods gradcam lrp_epsilon] [--out sanity.md]
    (--stride k measures after every k-th stage only, each row randomising everything down to it,
    so the rows still span the logits to the stem)
    (writes sanity.md and sanity.json; expensive methods run with lighter settings, see LIGHT)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch

from toolbox.analysis.saliency import METHODS, saliency_map
from toolbox.analysis.saliency.sanity import SanityRow, cascading_randomisation, lite0_cascade
from toolbox.atomic import write_text
from toolbox.models import load_model
from toolbox.render.heatmap import signed_part

EGYPTIAN_CAT = 285
LAYER = "_relu1"
CHANGED_BELOW = 0.5  # as tests/test_saliency_sanity.py: passing methods fall to 0.1-0.4 (Adebayo et al., Fig. 4)
EXPECTED_TO_FAIL = {"guided", "deconvnet", "guided_gradcam"}
SIGNED_OPTION = {m for m, info in METHODS.items() if info.needs_layer and m != "guided_gradcam"}  # take relu=False
# Per stage every method runs again: the expensive ones get cheaper settings (the ranking of a map
# with fewer noise samples or coarser windows still says whether it follows the weights).
LIGHT = {"smoothgrad": {"samples": 8}, "squaregrad": {"samples": 8}, "vargrad": {"samples": 8},
         "integrated_gradients": {"steps": 8}, "occlusion": {"window": 32, "stride": 32},
         "scorecam": {"batch_size": 64}, "ablationcam": {"batch_size": 128}}


def methods_for(names) -> dict:
    def fn(method):
        options = {**LIGHT.get(method, {}), **({"relu": False} if method in SIGNED_OPTION else {})}
        layer = LAYER if METHODS[method].needs_layer else None

        def run(module, x):
            m = saliency_map(module, x, method, EGYPTIAN_CAT, layer=layer, **options)
            return signed_part(m) if m.dim() == 3 else m

        return run

    return {m: fn(m) for m in names}


def strided(stages, stride: int):
    """Every ``stride``-th cumulative stage and the last, each merged with the stages skipped before
    it, so that the randomisation still reaches everything above the row's label."""
    kept, pending = [], []
    for i, (label, names) in enumerate(stages):
        pending += names
        if i % stride == 0 or i == len(stages) - 1:
            kept.append((label, pending))
            pending = []
    return kept


def changed_from(rows, method) -> int | None:
    """Index of the first row from which the map stays changed (|rank correlation| < CHANGED_BELOW
    there and at every deeper row), or None when the last row still resembles the trained map."""
    index = None
    for i, row in enumerate(rows):
        if abs(row.correlations[method]) >= CHANGED_BELOW:
            index = None
        elif index is None:
            index = i
    return index


def first_changed(rows, method) -> str:
    """The stage label from which ``method``'s map stays changed, or "never"."""
    index = changed_from(rows, method)
    return "never" if index is None else rows[index].randomised


def markdown(rows, methods) -> str:
    lines = ["| randomised down to | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for row in rows:
        lines.append(f"| {row.randomised} | " + " | ".join(f"{row.correlations[m]:.2f}" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def verdicts(rows, methods) -> dict[str, str]:
    """method -> "pass" | "FAIL" (| "expected FAIL" / "unexpected pass" for the rectifier methods).
    A method passes when its map stays changed from a row in the top half of the cascade on: once
    the stem is random every map loses the image, so only sensitivity to the top layers (the part
    that decides the class) tells a map that explains the model from an edge detector."""
    out = {}
    top_half = (len(rows) + 1) // 2
    for m in methods:
        index = changed_from(rows, m)
        passed = index is not None and index < top_half
        if m in EXPECTED_TO_FAIL:
            out[m] = "unexpected pass" if passed else "expected FAIL"
        else:
            out[m] = "pass" if passed else "FAIL"
    return out


def summary(rows, methods, results) -> str:
    return (f"\nmap stays changed (|rank correlation| < {CHANGED_BELOW}) from; passes when that is in the top "
            f"{(len(rows) + 1) // 2} of {len(rows)} rows:\n"
            + "\n".join(f"  {m:24s} {first_changed(rows, m):12s} {v}" for m, v in results.items())
            + f"\nfailing: {', '.join(m for m, v in results.items() if 'FAIL' in v) or 'none'}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=None, help="only the first N cascade stages (default: all)")
    parser.add_argument("--stride", type=int, default=1, help="measure after every k-th stage only (default 1)")
    parser.add_argument("--from-json", default=None, help="re-judge the rows of an earlier run's .json instead of running")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="default: every registered method")
    parser.add_argument("--out", default=None, help="write the table to this .md file and a .json beside it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        names = [k for k in saved["rows"][0] if k != "randomised"]
        rows = [SanityRow(r["randomised"], {m: r[m] for m in names}) for r in saved["rows"]]
        print(markdown(rows, names) + summary(rows, names, verdicts(rows, names)), end="")
        return
    torch.set_num_threads(2)
    model = load_model("lite0")
    view = model.preprocess.model_view(np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1]))
    x = model.input_tensor(view)
    stages = strided(lite0_cascade(model.module)[: args.stages], args.stride)
    methods = methods_for(args.methods)
    start = time.perf_counter()
    rows = cascading_randomisation(model.module, x, stages, methods, seed=args.seed)
    table = markdown(rows, list(methods))
    results = verdicts(rows, list(methods))
    text = summary(rows, list(methods), results) + f"({time.perf_counter() - start:.0f} s)\n"
    print(table + text, end="")
    if args.out:
        out = Path(args.out)
        write_text(out, table + text)
        write_text(out.with_suffix(".json"), json.dumps(
            {"image": "skimage chelsea", "target": EGYPTIAN_CAT, "seed": args.seed, "layer": LAYER,
             "rows": [{"randomised": r.randomised, **r.correlations} for r in rows], "verdicts": results,
             "changed_from": {m: first_changed(rows, m) for m in methods}},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
