"""Saliency speed: every method against its reference (captum, pytorch-grad-cam, zennit), same process.

Prints JSON: per model and method, median milliseconds per map for ours and the reference, and
their ratio (reference / ours: above 1 means we are faster). Runs are interleaved so background
load hits both sides alike. Also the live loop's cost: one saliency_pass (forward with every
visualisable layer captured + backward) per frame for every single-pass method, as fps and as a
ratio to Grad-CAM's pass. CAMs at the deepest visualisable layer.

captum's GuidedBackprop, Deconvolution and GuidedGradCam hook only nn.ReLU modules; they run on a
copy of the model whose ReLU6 modules are nn.ReLU subclasses with the same forward, so on lite0
they apply their rule at every rectifier as ours does (like for like, not the plain gradient).
``--clock cpu`` times each call by the CPU time of one thread (torch on one thread), which other
processes on a busy machine disturb far less than wall time.

    python scripts/bench_saliency.py [--models lite0 resnet18 vgg11_bn] [--repeats 7] [--device cpu]
        [--methods gradient guided] [--size 224] [--image noise|cat] [--batch-size 32] [--no-live] [--clock cpu] [--out bench.json]
    (Score-CAM and Ablation-CAM run once each per side, both sides with the same --batch-size: minutes on a CPU)
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from toolbox.analysis.saliency import METHODS, saliency_map, saliency_pass
from toolbox.atomic import write_text
from toolbox.models import load_model

TARGET = 285
EXPENSIVE = {"smoothgrad": {"samples": 16, "batch_size": 16}, "squaregrad": {"samples": 16, "batch_size": 16},
             "vargrad": {"samples": 16, "batch_size": 16}, "integrated_gradients": {"steps": 32, "batch_size": 32},
             "occlusion": {"window": 32, "stride": 16, "batch_size": 64}, "scorecam": {"batch_size": 32},
             "ablationcam": {"batch_size": 32}}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_ms(fns: dict, repeats: int, device, clock=time.perf_counter) -> dict[str, float]:
    """Median ms per call of each fn, calls interleaved round-robin after one warm-up each."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = clock()
            fn()
            sync(device)
            times[name].append((clock() - start) * 1000)
    return {name: round(statistics.median(t), 1) for name, t in times.items()}


class CaptumVisibleReLU6(nn.ReLU):
    """ReLU6 as an nn.ReLU subclass: captum's modified-ReLU methods find their modules with
    isinstance(module, nn.ReLU), so this is how they see (and apply their rule at) a ReLU6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x, inplace=self.inplace)


def with_relu6_replaced(module: nn.Module, replacement=lambda relu6: CaptumVisibleReLU6(relu6.inplace)) -> nn.Module:
    """A copy of ``module`` with every nn.ReLU6 submodule replaced by ``replacement(that ReLU6)``."""
    copied = copy.deepcopy(module)
    for name, child in list(copied.named_modules()):
        if isinstance(child, nn.ReLU6):
            parent, _, attribute = name.rpartition(".")
            setattr(copied.get_submodule(parent) if parent else copied, attribute, replacement(child))
    return copied


def _thawed(module):
    """pytorch-grad-cam needs trainable parameters (it raises on frozen ones)."""
    return copy.deepcopy(module).requires_grad_(True)


def references(model, module, x, layer, perturbation_batch: int = 32):
    """method -> {reference name: callable}: captum, pytorch-grad-cam or zennit configured as our
    defaults, each library object built once (its best case)."""
    from captum import attr

    refs: dict[str, dict] = {}
    noise = {"nt_samples": 16, "nt_samples_batch_size": 16, "stdevs": 0.15 * float(x.max() - x.min())}
    layer_module = module.get_submodule(layer)
    visible = with_relu6_replaced(module)  # captum's ReLU hooks then see every rectifier
    refs["gradient"] = {"captum.Saliency": lambda: attr.Saliency(module).attribute(x, target=TARGET, abs=False)}
    refs["input_x_gradient"] = {"captum.InputXGradient": lambda: attr.InputXGradient(module).attribute(x, target=TARGET)}
    refs["guided"] = {"captum.GuidedBackprop": lambda: attr.GuidedBackprop(visible).attribute(x, target=TARGET)}
    refs["deconvnet"] = {"captum.Deconvolution": lambda: attr.Deconvolution(visible).attribute(x, target=TARGET)}
    refs["gradcam"] = {"captum.LayerGradCam": lambda: attr.LayerGradCam(module, layer_module).attribute(
        x, target=TARGET, relu_attributions=True)}
    refs["guided_gradcam"] = {"captum.GuidedGradCam": lambda: attr.GuidedGradCam(
        visible, visible.get_submodule(layer)).attribute(x, target=TARGET)}
    for ours, nt_type in (("smoothgrad", "smoothgrad"), ("squaregrad", "smoothgrad_sq"), ("vargrad", "vargrad")):
        refs[ours] = {"captum.NoiseTunnel(Saliency)": lambda nt_type=nt_type: attr.NoiseTunnel(
            attr.Saliency(module)).attribute(x, nt_type=nt_type, target=TARGET, abs=False, **noise)}
    refs["integrated_gradients"] = {"captum.IntegratedGradients": lambda: attr.IntegratedGradients(module).attribute(
        x, target=TARGET, n_steps=32, internal_batch_size=32)}
    refs["occlusion"] = {"captum.Occlusion": lambda: attr.Occlusion(module).attribute(
        x, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), target=TARGET, perturbations_per_eval=64)}
    try:
        import pytorch_grad_cam as gc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(TARGET)]
        classes = {"gradcam": gc.GradCAM, "gradcam_plus_plus": gc.GradCAMPlusPlus, "xgradcam": gc.XGradCAM,
                   "layercam": gc.LayerCAM, "hirescam": gc.HiResCAM, "gradcam_elementwise": gc.GradCAMElementWise,
                   "eigengradcam": gc.EigenGradCAM, "eigencam": gc.EigenCAM, "scorecam": gc.ScoreCAM,
                   "ablationcam": gc.AblationCAM}
        for method, cls in classes.items():
            # Each CAM on its own copy: a CAM's hooks store the layer's activation on every forward
            # of its model, so CAMs sharing one model would keep each other's (gigabytes per Score-CAM).
            thawed = _thawed(module)
            cam = cls(model=thawed, target_layers=[thawed.get_submodule(layer)])
            if method in ("scorecam", "ablationcam"):
                cam.batch_size = perturbation_batch
            refs.setdefault(method, {})[f"pytorch_grad_cam.{cls.__name__}"] = (
                lambda cam=cam: cam(input_tensor=x, targets=targets))
        fullgrad = gc.FullGrad(model=_thawed(module), target_layers=[])
        refs["fullgrad"] = {"pytorch_grad_cam.FullGrad": lambda: fullgrad(input_tensor=x, targets=targets)}
    except ImportError:
        pass
    try:
        from zennit.attribution import Gradient

        from toolbox.analysis.saliency.lrp import LRP_COMPOSITES, batch_norm_canonizer, make_composite

        one_hot = lambda out: torch.eye(out.shape[1], device=out.device)[[TARGET]] * out  # noqa: E731
        for method in LRP_COMPOSITES:
            def zennit_lrp(method=method):
                canonizer = batch_norm_canonizer(module, x)
                with Gradient(module, make_composite(method, canonizers=[canonizer] if canonizer else [])) as attributor:
                    return attributor(x, one_hot)[1]
            refs[method] = {"zennit.Gradient": zennit_lrp}
    except ImportError:
        pass
    return refs


def relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference| of two maps of one image (batch axis dropped)."""
    reference = reference.detach().reshape(ours.shape)
    return float((ours - reference).abs().max() / reference.abs().max())


SAME_SHAPE = ("gradient", "input_x_gradient", "guided", "deconvnet")  # captum returns our (3, H, W) map


def bench_input(model, image: str, size: int) -> torch.Tensor:
    """(1, 3, size, size) model input: seeded Gaussian noise, or skimage's cat photo ("cat")
    through the model's preprocessing. Score-CAM's cost depends on the image (how many channels
    share a mask), the other methods' do not."""
    if image == "noise":
        return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    import cv2
    import numpy as np
    import skimage.data

    cat = np.ascontiguousarray(skimage.data.chelsea()[:, :, ::-1])
    view = cv2.resize(model.preprocess.model_view(cat), (size, size), interpolation=cv2.INTER_AREA)
    return model.input_tensor(view).cpu()


def bench_model(name: str, repeats: int, device, methods: list[str] | None = None, size: int = 224,
                perturbation_batch: int = 32, live: bool = True, clock=time.perf_counter, image: str = "noise") -> dict:
    model = load_model(name, weights=None if name == "lite0" else "none", device=device)
    module = model.module
    x = bench_input(model, image, size).to(device)
    layer = model.layers[-1]
    rows = {}
    for method, refs in references(model, module, x, layer, perturbation_batch).items():
        if methods is not None and method not in methods:
            continue
        options = EXPENSIVE.get(method, {})
        if method in ("scorecam", "ablationcam"):
            options = {**options, "batch_size": perturbation_batch}
        n = max(2, repeats // 3) if method in EXPENSIVE else repeats
        if method in ("scorecam", "ablationcam"):
            n = 1  # seconds to minutes each on a CPU
        ours = lambda method=method, options=options: saliency_map(
            model, x, method, TARGET, layer=layer if METHODS[method].needs_layer else None, **options)
        ms = interleaved_ms({"ours": ours, **refs}, n, device, clock)
        rows[method] = {"ours_ms": ms.pop("ours"), **{f"{k}_ms": v for k, v in ms.items()}}
        for ref, ref_ms in ms.items():
            rows[method][f"speedup_vs_{ref}"] = round(ref_ms / rows[method]["ours_ms"], 2)
        if method in SAME_SHAPE:
            mine = ours()
            for ref, fn in refs.items():
                rows[method][f"difference_vs_{ref}"] = relative_difference(mine, fn())
    with torch.inference_mode():
        forward = lambda: module(x)
        forward_ms = interleaved_ms({"forward": forward}, repeats, device, clock)["forward"]
    notes = ("captum's GuidedBackprop/Deconvolution/GuidedGradCam run on a copy whose ReLU6 modules are nn.ReLU "
             "subclasses, so they apply their rule at every ReLU6 as ours does; Deconvolution still ignores "
             "the saturation at 6, which ours keeps (hence its difference)") if name == "lite0" else ""
    if not live:
        return {"forward_inference_ms": forward_ms, "layer": layer, "methods": rows, "notes": notes}
    # The live loop: one saliency_pass per frame (forward with every visualisable layer captured,
    # backward, map). All single-pass methods interleaved so that load hits them alike; each
    # CAM's cost as a ratio to Grad-CAM's.
    single = [m for m in METHODS if not METHODS[m].expensive and (methods is None or m in methods or m == "gradcam")]
    steps = {m: (lambda m=m: saliency_pass(model, x, m, None, layer=layer, capture=model.layers)) for m in single}
    ms = interleaved_ms(steps, repeats, device, clock)
    live = {m: {"ms_per_frame": v, "fps": round(1000 / v, 1), "vs_gradcam": round(v / ms["gradcam"], 2)}
            for m, v in ms.items()}
    return {"forward_inference_ms": forward_ms, "layer": layer, "methods": rows, "live_saliency_pass": live,
            "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lite0", "resnet18"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--image", choices=("noise", "cat"), default="noise",
                        help="seeded noise or skimage's cat photo (Score-CAM's cost depends on the image)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="Score-CAM / Ablation-CAM masks per forward, ours and pytorch-grad-cam's alike")
    parser.add_argument("--no-live", action="store_true", help="skip the live-loop saliency_pass timings")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: CPU time of one thread, torch on one thread (steadier on a busy machine)")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")
    args = parser.parse_args()
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu times CPU work; on --device cuda use the default wall clock")
    torch.set_num_threads(1 if args.clock == "cpu" else args.threads)
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    device = torch.device(args.device)
    warnings.filterwarnings("ignore")  # captum warns on every call about hooks and input requires_grad
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "clock": args.clock,
              "input": [1, 3, args.size, args.size], "image": args.image, "perturbation_batch_size": args.batch_size,
              "models": {name: bench_model(name, args.repeats, device, args.methods, args.size, args.batch_size,
                                           not args.no_live, clock, args.image) for name in args.models}}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        write_text(Path(args.out), text + "\n")


if __name__ == "__main__":
    main()
