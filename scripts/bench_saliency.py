"""Saliency speed: ours against captum (and pytorch-grad-cam's Grad-CAM), same process, same input.

Prints JSON: per model and method, median milliseconds per frame for ours and the reference, and
their ratio (reference / ours: above 1 means we are faster). Runs are interleaved so background
load hits both sides alike. Also the live loop's cost: one saliency_pass (forward with every
visualisable layer captured + backward) per frame for gradient, guided and Grad-CAM, as fps.

    python scripts/bench_saliency.py [--models lite0 resnet18] [--repeats 7] [--device cpu] [--methods gradient gradcam]
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
import warnings

import torch

from toolbox.analysis.saliency import saliency_map, saliency_pass
from toolbox.models import load_model

SIZE = 224
TARGET = 285
EXPENSIVE = {"smoothgrad": {"samples": 16, "batch_size": 16}, "integrated_gradients": {"steps": 32, "batch_size": 32},
             "occlusion": {"window": 32, "stride": 16, "batch_size": 64}}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_ms(fns: dict, repeats: int, device) -> dict[str, float]:
    """Median ms per call of each fn, calls interleaved round-robin after one warm-up each."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: round(statistics.median(t), 1) for name, t in times.items()}


def references(model, module, x, gradcam_layer):
    """method -> {reference name: callable}, captum counterparts configured as our defaults."""
    from captum import attr

    layer = module.get_submodule(gradcam_layer)
    noise = {"nt_samples": 16, "nt_samples_batch_size": 16, "stdevs": 0.15 * float(x.max() - x.min())}
    refs = {
        "gradient": {"captum.Saliency": lambda: attr.Saliency(module).attribute(x, target=TARGET, abs=False)},
        "input_x_gradient": {"captum.InputXGradient": lambda: attr.InputXGradient(module).attribute(x, target=TARGET)},
        "guided": {"captum.GuidedBackprop": lambda: attr.GuidedBackprop(module).attribute(x, target=TARGET)},
        "deconvnet": {"captum.Deconvolution": lambda: attr.Deconvolution(module).attribute(x, target=TARGET)},
        "gradcam": {"captum.LayerGradCam": lambda: attr.LayerGradCam(module, layer).attribute(
            x, target=TARGET, relu_attributions=True)},
        "guided_gradcam": {"captum.GuidedGradCam": lambda: attr.GuidedGradCam(module, layer).attribute(x, target=TARGET)},
        "smoothgrad": {"captum.NoiseTunnel(Saliency)": lambda: attr.NoiseTunnel(attr.Saliency(module)).attribute(
            x, nt_type="smoothgrad", target=TARGET, abs=False, **noise)},
        "integrated_gradients": {"captum.IntegratedGradients": lambda: attr.IntegratedGradients(module).attribute(
            x, target=TARGET, n_steps=32, internal_batch_size=32)},
        "occlusion": {"captum.Occlusion": lambda: attr.Occlusion(module).attribute(
            x, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), target=TARGET, perturbations_per_eval=64)},
    }
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        # pytorch-grad-cam needs trainable parameters (it raises on frozen ones): give it a thawed copy,
        # and one long-lived GradCAM object (its best case).
        thawed = copy.deepcopy(module).requires_grad_(True)
        cam = GradCAM(model=thawed, target_layers=[thawed.get_submodule(gradcam_layer)])
        refs["gradcam"]["pytorch_grad_cam.GradCAM"] = lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(TARGET)])
    except ImportError:
        pass
    return refs


def bench_model(name: str, repeats: int, device, methods: list[str] | None = None) -> dict:
    model = load_model(name, weights=None if name == "lite0" else "none", device=device)
    module = model.module
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)).to(device)
    gradcam_layer = model.layers[-1]
    rows = {}
    for method, refs in references(model, module, x, gradcam_layer).items():
        if methods is not None and method not in methods:
            continue
        options = EXPENSIVE.get(method, {})
        n = max(2, repeats // 3) if method in EXPENSIVE else repeats
        ours = lambda: saliency_map(model, x, method, TARGET, layer=gradcam_layer if "gradcam" in method else None, **options)
        ms = interleaved_ms({"ours": ours, **refs}, n, device)
        rows[method] = {"ours_ms": ms.pop("ours"), **{f"{k}_ms": v for k, v in ms.items()}}
        for ref, ref_ms in ms.items():
            rows[method][f"speedup_vs_{ref}"] = round(ref_ms / rows[method]["ours_ms"], 2)
    with torch.inference_mode():
        forward = lambda: module(x)
        forward_ms = interleaved_ms({"forward": forward}, repeats, device)["forward"]
    live = {}
    for method in ("gradient", "guided", "gradcam"):
        step = lambda: saliency_pass(model, x, method, None, layer=gradcam_layer, capture=model.layers)
        ms = interleaved_ms({"pass": step}, repeats, device)["pass"]
        live[method] = {"ms_per_frame": ms, "fps": round(1000 / ms, 1)}
    return {"forward_inference_ms": forward_ms, "methods": rows, "live_saliency_pass": live,
            "notes": ("captum GuidedBackprop/Deconvolution/GuidedGradCam only hook nn.ReLU: on lite0 (ReLU6) they "
                      "compute the plain gradient, so their timing is of a different (unguided) map")
            if name == "lite0" else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lite0", "resnet18"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warnings.filterwarnings("ignore")  # captum warns on every call about hooks and input requires_grad
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "input": [1, 3, SIZE, SIZE],
              "models": {name: bench_model(name, args.repeats, device, args.methods) for name in args.models}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
