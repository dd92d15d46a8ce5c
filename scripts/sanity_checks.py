"""Cascading model randomisation (Adebayo et al. 2018) for every saliency method on lite0, as a table.

Re-initialises lite0 from the logits down, one stage at a time (cumulatively, on a copy), and
prints the Spearman rank correlation between each method's map on the cat photo and the trained
model's map, then for every method whether it passes and, for a failure, whether it is expected
(EXPECTED_FAILURES and BORDERLINE give the measured reason per method) or not. A map that explains the model
falls towards 0 once the top layers are destroyed; one whose |rank correlation| stays at or above
0.5 (CHANGED_BELOW) is an edge detector. Pixel maps are compared as max-over-channels |map|, the
CAMs as their signed maps at _relu1 (before the ReLU), the rest as they come. Every call starts
from the same torch seed, so the noise tunnels add the same noise at every stage and the
correlation measures the weights, not the noise draw.

    python scripts/sanity_checks.py [--stages 19] [--stride 3] [--methods gradcam lrp_epsilon]
        [--seeds 0 1 2] [--with-reference] [--out sanity.md]
    (--stride k measures after every k-th stage only, each row randomising everything down to it,
    so the rows still span the logits to the stem; --seeds runs the cascade once per seed, each
    with its own randomised weights and noise, and prints each cell as the range over the seeds;
    --with-reference adds, for the methods in REFERENCES, the independent implementation (zennit,
    pytorch-grad-cam, captum) run through the same randomised copies, as a column "method [library]")
    (writes sanity.md and sanity.json; expensive methods run with lighter settings, see LIGHT)
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch

from toolbox.analysis.saliency import METHODS, saliency_map
from toolbox.analysis.saliency.sanity import SanityRow, cascading_randomisation, lite0_cascade, strided_stages
from toolbox.atomic import write_text
from toolbox.models import load_model
from toolbox.render.heatmap import signed_part

EGYPTIAN_CAT = 285
LAYER = "_relu1"
CHANGED_BELOW = 0.5  # as tests/test_saliency_sanity.py: passing methods fall to 0.1-0.4 (Adebayo et al., Fig. 4)
# Methods whose failure belongs to the method, not to our implementation: with --with-reference the
# independent implementation gives the same correlation at every row (to 0.01; Eigen maps up to sign).
EXPECTED_FAILURES = {
    "guided": "the backward passes only positive signals at every ReLU, so the map reconstructs the image "
              "whatever the weights above (Adebayo et al. 2018; Nie et al. 2018)",
    "deconvnet": "the backward rectifies the signal instead of using the forward switches, so the weights "
                 "above barely enter (Adebayo et al. 2018; Nie et al. 2018)",
    "lrp_epsilon_plus_flat": "z+ on every convolution: products of z+ steps converge to a rank-1 matrix, so "
                             "the map ignores the later layers (Sixt et al. 2020); zennit gives the same curve",
    "lrp_alpha2_beta1": "alpha-beta rules are among the modified backward rules whose maps ignore the later "
                        "layers (Sixt et al. 2020); zennit's EpsilonAlpha2Beta1 gives the same curve",
    "eigencam": "no gradient, no class: the first principal component of the layer's activations follows the "
                "image's layout in a random network too, and layers above its layer do not enter at all; "
                "pytorch-grad-cam's EigenCAM gives the same curve up to its sign",
    "eigengradcam": "just before global pooling the gradient is the same at every position of a channel, so "
                    "activation x gradient is the activation with its channels rescaled and its first principal "
                    "component follows the image as Eigen-CAM's does; pytorch-grad-cam gives the same curve",
    "fullgrad": "the bias value cancels in its per-channel min-max scaling, so the map is a sum of normalised "
                "gradient magnitudes over ~50 layers, ~90% of it from the 14x14 and 7x7 layers upsampled, and "
                "where a random network's gradients are large still follows the image; pytorch-grad-cam's "
                "FullGrad gives the same curve",
}
# Methods that sit on the 0.5 line, passing with some seeds and failing with others: either verdict
# is expected (measured over five seeds; captum's NoiseTunnel gives the same curve).
BORDERLINE = {
    "squaregrad": "a mean of squared gradients ranks pixels mostly by how sensitive the features are there for "
                  "any class, so it changes less than the gradient when the classifier is randomised and "
                  "hovers near 0.5 lower down",
    "vargrad": "the mean square minus the squared mean: the mean is small, so it follows SquareGrad",
}
SIGNED_OPTION = {m for m, info in METHODS.items() if info.needs_layer and m != "guided_gradcam"}  # take relu=False
# Per stage every method runs again: the expensive ones get cheaper settings (the ranking of a map
# with fewer noise samples or coarser windows still says whether it follows the weights).
LIGHT = {"smoothgrad": {"samples": 8}, "squaregrad": {"samples": 8}, "vargrad": {"samples": 8},
         "integrated_gradients": {"steps": 8}, "occlusion": {"window": 32, "stride": 32},
         "scorecam": {"batch_size": 64}, "ablationcam": {"batch_size": 128}}


def methods_for(names, seed: int = 0) -> dict:
    def fn(method):
        options = {**LIGHT.get(method, {}), **({"relu": False} if method in SIGNED_OPTION else {})}
        layer = LAYER if METHODS[method].needs_layer else None

        def run(module, x):
            torch.manual_seed(seed)  # the noise tunnels draw the same noise for every copy
            m = saliency_map(module, x, method, EGYPTIAN_CAT, layer=layer, **options)
            return signed_part(m) if m.dim() == 3 else m

        return run

    return {m: fn(m) for m in names}


# --- independent implementations, run through the same copies -------------------------------------

def _mbconv_sum_canonizer():
    """zennit's ResNet canonizer pattern for lite0's inverted residuals: the skip addition becomes
    zennit's Sum module (Norm rule), so the reference uses none of our canonisation code."""
    from zennit.canonizers import AttributeCanonizer
    from zennit.layer import Sum

    from toolbox.models.lite0 import MBConvBlock

    def forward(self, x):
        y = x
        if self.has_expand:
            y = self._relu0(self._bn0(self._expand_conv(y)))
        y = self._relu1(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return self.canonizer_sum(torch.stack([x, y], dim=-1))

    def attributes(name, module):
        if isinstance(module, MBConvBlock) and module.has_skip:
            return {"forward": forward.__get__(module), "canonizer_sum": Sum()}
        return None

    return AttributeCanonizer(attributes)


def zennit_lrp(method: str):
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonAlpha2Beta1, EpsilonPlusFlat

    composite_class = {"lrp_epsilon_plus_flat": EpsilonPlusFlat, "lrp_alpha2_beta1": EpsilonAlpha2Beta1}[method]

    def run(module, x):
        composite = composite_class(canonizers=[SequentialMergeBatchNorm(), _mbconv_sum_canonizer()])
        with Gradient(module, composite) as attributor:
            _, relevance = attributor(x, lambda out: torch.eye(out.shape[1])[[EGYPTIAN_CAT]] * out)
        return signed_part(relevance[0])

    return run


def grad_cam_raw(method: str):
    """pytorch-grad-cam's EigenCAM / EigenGradCAM map at LAYER, signed (its get_cam_image, before
    its ReLU and resize), on a trainable copy (it refuses frozen models). Its sign is LAPACK's."""
    import pytorch_grad_cam as gc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    base = {"eigencam": gc.EigenCAM, "eigengradcam": gc.EigenGradCAM}[method]

    class Recording(base):
        def get_cam_image(self, *args, **kwargs):
            self.raw = super().get_cam_image(*args, **kwargs)
            return self.raw

    def run(module, x):
        thawed = copy.deepcopy(module).requires_grad_(True)
        with Recording(model=thawed, target_layers=[thawed.get_submodule(LAYER)]) as cam:
            cam(input_tensor=x, targets=[ClassifierOutputTarget(EGYPTIAN_CAT)])
            return torch.from_numpy(cam.raw[0])

    return run


def grad_cam_fullgrad(module, x):
    import pytorch_grad_cam as gc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    thawed = copy.deepcopy(module).requires_grad_(True)
    with gc.FullGrad(model=thawed, target_layers=[]) as cam:
        return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(EGYPTIAN_CAT)])[0])


def captum_squaregrad(seed: int):
    from captum.attr import NoiseTunnel, Saliency

    def run(module, x):
        torch.manual_seed(seed)
        m = NoiseTunnel(Saliency(module)).attribute(
            x, nt_type="smoothgrad_sq", nt_samples=LIGHT["squaregrad"]["samples"], nt_samples_batch_size=8,
            stdevs=0.15 * float(x.max() - x.min()), target=EGYPTIAN_CAT, abs=False)
        return signed_part(m[0])

    return run


REFERENCES = {  # method -> (library, factory(seed) -> fn(module, x) -> map compared like ours)
    "lrp_epsilon_plus_flat": ("zennit", lambda seed: zennit_lrp("lrp_epsilon_plus_flat")),
    "lrp_alpha2_beta1": ("zennit", lambda seed: zennit_lrp("lrp_alpha2_beta1")),
    "eigencam": ("pytorch-grad-cam", lambda seed: grad_cam_raw("eigencam")),
    "eigengradcam": ("pytorch-grad-cam", lambda seed: grad_cam_raw("eigengradcam")),
    "fullgrad": ("pytorch-grad-cam", lambda seed: grad_cam_fullgrad),
    "squaregrad": ("captum", captum_squaregrad),
}


def reference_methods(names, seed: int = 0) -> dict:
    """{"method [library]": fn} for the methods of ``names`` that have a reference."""
    return {f"{m} [{REFERENCES[m][0]}]": REFERENCES[m][1](seed) for m in names if m in REFERENCES}


def method_of(column: str) -> str:
    return column.split(" [")[0]


# --- verdicts ---------------------------------------------------------------------------------------

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


def passes(rows, method) -> bool:
    """A method passes when its map stays changed from a row in the top half of the cascade on:
    once the stem is random every map loses the image, so only sensitivity to the top layers (the
    part that decides the class) tells a map that explains the model from an edge detector."""
    index = changed_from(rows, method)
    return index is not None and index < (len(rows) + 1) // 2


def verdict(method: str, passed: list[bool]) -> str:
    """"pass" when every seed's cascade passes, else "FAIL (expected: reason)" for the methods of
    EXPECTED_FAILURES, "FAIL (unexpected)" for the rest; "unexpected pass" for an expected failure
    that passed every seed; either outcome "(borderline: reason)" for the methods of BORDERLINE.
    A failure in some seeds only names how many."""
    seeds = "" if all(passed) or not any(passed) else f" in {passed.count(False)} of {len(passed)} seeds"
    outcome = "pass" if all(passed) else f"FAIL{seeds}"
    if method_of(method) in BORDERLINE:
        return f"{outcome} (borderline: {BORDERLINE[method_of(method)]})"
    expected = EXPECTED_FAILURES.get(method_of(method))
    if all(passed):
        return "unexpected pass" if expected else "pass"
    return f"{outcome} (expected: {expected})" if expected else f"{outcome} (unexpected)"


def markdown(runs, methods) -> str:
    """One row per stage; a cell is the correlation, or its range min..max over the seeds' runs."""
    lines = ["| randomised down to | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for i, row in enumerate(runs[0]):
        cells = []
        for m in methods:
            values = [rows[i].correlations[m] for rows in runs]
            low, high = min(values), max(values)
            cells.append(f"{low:.2f}" if len(values) == 1 or high - low < 0.005 else f"{low:.2f}..{high:.2f}")
        lines.append(f"| {row.randomised} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summary(runs, methods, results) -> str:
    rows = runs[0]
    return (f"\nmap stays changed (|rank correlation| < {CHANGED_BELOW}) from; passes when that is in the top "
            f"{(len(rows) + 1) // 2} of {len(rows)} rows:\n"
            + "\n".join(f"  {m:36s} {' / '.join(first_changed(r, m) for r in runs):14s} {results[m]}"
                        for m in methods)
            + f"\nunexpected: {', '.join(m for m in methods if 'unexpected' in results[m]) or 'none'}\n")


def judge(runs, methods) -> dict[str, str]:
    return {m: verdict(m, [passes(rows, m) for rows in runs]) for m in methods}


def load_runs(path: Path) -> tuple[list[list[SanityRow]], list[str]]:
    saved = json.loads(path.read_text())
    saved_runs = saved.get("runs") or [{"rows": saved["rows"]}]  # one-seed files of earlier versions
    names = [k for k in saved_runs[0]["rows"][0] if k != "randomised"]
    runs = [[SanityRow(r["randomised"], {m: r[m] for m in names}) for r in run["rows"]] for run in saved_runs]
    return runs, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=None, help="only the first N cascade stages (default: all)")
    parser.add_argument("--stride", type=int, default=1, help="measure after every k-th stage only (default 1)")
    parser.add_argument("--from-json", default=None, help="re-judge the rows of an earlier run's .json instead of running")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="default: every registered method")
    parser.add_argument("--with-reference", action="store_true",
                        help="also run the independent implementation of each method in REFERENCES")
    parser.add_argument("--out", default=None, help="write the table to this .md file and a .json beside it")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="one cascade per seed (randomised weights and noise); default 0")
    args = parser.parse_args()
    if args.from_json:
        runs, names = load_runs(Path(args.from_json))
        print(markdown(runs, names) + summary(runs, names, judge(runs, names)), end="")
        return
    torch.set_num_threads(2)
    model = load_model("lite0")
    view = model.preprocess.model_view(np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1]))
    x = model.input_tensor(view)
    stages = strided_stages(lite0_cascade(model.module)[: args.stages], args.stride)
    start = time.perf_counter()
    runs, names = [], []
    for seed in args.seeds:
        methods = methods_for(args.methods, seed)
        if args.with_reference:
            methods.update(reference_methods(args.methods, seed))
        names = list(methods)
        runs.append(cascading_randomisation(model.module, x, stages, methods, seed=seed))
    table = markdown(runs, names)
    results = judge(runs, names)
    text = summary(runs, names, results) + f"({time.perf_counter() - start:.0f} s)\n"
    print(table + text, end="")
    if args.out:
        out = Path(args.out)
        write_text(out, table + text)
        write_text(out.with_suffix(".json"), json.dumps(
            {"image": "skimage chelsea", "target": EGYPTIAN_CAT, "layer": LAYER, "verdicts": results,
             "runs": [{"seed": seed, "rows": [{"randomised": r.randomised, **r.correlations} for r in rows],
                       "changed_from": {m: first_changed(rows, m) for m in names}}
                      for seed, rows in zip(args.seeds, runs)]},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
