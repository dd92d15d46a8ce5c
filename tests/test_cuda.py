"""The CUDA paths: bf16 dream with an fp32 master image, the out-of-memory fallback under a real
memory cap, saliency and live compute equal to the CPU, onnxruntime's CUDA provider with I/O binding.

Every test here is marked ``cuda`` and skips without a GPU; scripts/gpu_check.sh runs them first.
CPU references use the session's CPU lite0; comparisons are relative L2 errors of whole tensors.
"""
from __future__ import annotations

import time

import pytest
import torch

from toolbox.analysis.dream import DreamEngine, default_layers, preset
from toolbox.analysis.inversion import InversionSettings, invert
from toolbox.analysis.onnx_frame_analysis import OnnxFrameAnalyser, TorchFrameAnalyser
from toolbox.analysis.saliency import saliency_pass
from toolbox.analysis.style import StyleSettings, Stylist
from toolbox.app.compute import LiveCompute
from toolbox.app.state import AppState
from toolbox.app.threads import Captured
from toolbox.models import load_model
from toolbox.models.onnx_runtime import OnnxSession
from toolbox.sources.frame import Frame

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")]

DREAM_LAYER = "_blocks.5"


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, both compared in fp32 on the CPU."""
    actual, expected = actual.detach().float().cpu(), expected.detach().float().cpu()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-12))


@pytest.fixture(scope="module")
def cuda_lite0():
    return load_model("lite0", device="cuda")


@pytest.fixture
def exact_fp32():
    """TF32 off for this test (cuDNN and matmuls), so that CUDA and CPU may be compared closely."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_dream_forward_runs_in_bf16_and_its_gradient_follows_the_cpu_one(lite0, cuda_lite0):
    settings = preset("classic").with_layers([DREAM_LAYER])
    rgb = torch.rand(1, 3, 192, 256, generator=torch.Generator().manual_seed(0))
    dtypes = []
    with DreamEngine(cuda_lite0, settings) as gpu, DreamEngine(lite0, settings) as cpu:
        forward = gpu.forward

        def recording_forward(x):
            acts = forward(x)
            dtypes.append({a.dtype for a in acts.values()})
            return acts

        gpu.forward = recording_forward
        gpu_grad, _ = gpu.gradient(rgb.cuda())
        cpu_grad, _ = cpu.gradient(rgb)
    assert dtypes and all(seen == {torch.bfloat16} for seen in dtypes)  # the forward ran under bf16 autocast
    assert gpu_grad.dtype == torch.float32 and gpu_grad.device.type == "cuda"
    cosine = torch.nn.functional.cosine_similarity(gpu_grad.cpu().flatten(), cpu_grad.flatten(), dim=0)
    assert cosine > 0.9  # bf16 activations: the same ascent direction, not the same digits


def test_dream_master_image_is_fp32_and_keeps_updates_below_bf16_resolution(cuda_lite0):
    # A mean change of 1e-6 per step: below bf16's spacing near 0.5 (2**-9), so a bf16 image would not move.
    settings = preset("classic").with_layers([DREAM_LAYER]).replace(step_size=1e-6, jitter=0)
    rgb = torch.full((1, 3, 128, 160), 0.5, device="cuda") + 0.01 * torch.rand(1, 3, 128, 160, device="cuda")
    with DreamEngine(cuda_lite0, settings) as engine, torch.enable_grad():
        stepped, _ = engine.step(rgb, torch.Generator().manual_seed(0))
    change = (stepped - rgb).abs()
    assert stepped.dtype == torch.float32 and stepped.device.type == "cuda"
    assert (change > 0).float().mean() > 0.5
    assert float(change.max()) < 1e-3


def test_dream_run_on_cuda_raises_its_objective_and_stays_in_range(cuda_lite0):
    settings = preset("classic").with_layers([DREAM_LAYER]).replace(octaves=2, steps=4)
    rgb = torch.rand(1, 3, 240, 320, generator=torch.Generator().manual_seed(1)).cuda()
    with DreamEngine(cuda_lite0, settings) as engine:
        out, done, cancelled, objectives = engine.run(rgb)
    assert (done, cancelled) == (8, False)
    assert out.dtype == torch.float32 and out.shape == rgb.shape
    assert torch.isfinite(out).all() and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert objectives[3] > objectives[0] and objectives[7] > objectives[4]  # within each octave


def test_dream_out_of_memory_under_a_real_cap_falls_back_to_tiles(cuda_lite0):
    settings = preset("classic").with_layers(default_layers("classic", "lite0", cuda_lite0.layers))
    torch.manual_seed(0)
    rgb = torch.rand(1, 3, 4096, 6144, device="cuda")  # 25 Mpx: untiled, its saved activations need tens of GB
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(rgb.device).total_memory
    cap = torch.cuda.memory_reserved() + 3 * 2**30  # room for the image, its gradient, its tiles and some tiles' passes
    engine = DreamEngine(cuda_lite0, settings)
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    try:
        grad, objective = engine.gradient(rgb)
        torch.cuda.synchronize()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        engine.close()
    assert engine.fallbacks and engine.fallbacks[0].startswith("untiled -> tile")
    assert grad.shape == rgb.shape and torch.isfinite(grad).all() and torch.isfinite(objective)
    for corner in (grad[..., :256, :256], grad[..., -256:, -256:], grad[..., :256, -256:], grad[..., -256:, :256]):
        assert float(corner.abs().sum()) > 0  # every tile delivered its part


@pytest.mark.parametrize("objective", ["inversion", "style"])
def test_whole_image_objective_out_of_memory_under_a_real_cap_continues_at_a_smaller_size(cuda_lite0, objective):
    torch.manual_seed(0)
    rgb = torch.rand(1, 3, 3072, 4096, device="cuda")  # 12.5 Mpx: the gradient pass saves tens of GB
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(rgb.device).total_memory
    cap = torch.cuda.memory_reserved() + 3 * 2**30  # room for the image, its targets and a forward without grad
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total))
    try:
        if objective == "inversion":
            result = invert(rgb, cuda_lite0, "_blocks.4", InversionSettings(steps=1))
        else:
            with Stylist(cuda_lite0, rgb[..., :512, :512], StyleSettings(steps=1)) as stylist:
                result = stylist.stylise(rgb)
        torch.cuda.synchronize()
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert result.fallbacks and result.fallbacks[0].startswith("out of GPU memory at 4096x3072: continued at 2048x1536")
    assert max(result.size) < 4096 and result.steps_done == 1
    assert result.rgb.shape == rgb.shape and torch.isfinite(result.rgb).all()


@pytest.mark.parametrize("method", ["gradient", "guided", "deconvnet", "input_x_gradient", "gradcam", "guided_gradcam"])
def test_saliency_pass_on_cuda_equals_the_cpu_pass(lite0, cuda_lite0, cat_bgr, exact_fp32, method):
    view = lite0.preprocess.model_view(cat_bgr)
    capture = lite0.layers[:4]
    cpu = saliency_pass(lite0, lite0.input_tensor([view]), method, capture=capture)
    gpu = saliency_pass(cuda_lite0, cuda_lite0.input_tensor([view]), method, capture=capture)
    assert gpu.map.device.type == "cuda"
    assert gpu.class_index == cpu.class_index
    assert relative_error(gpu.logits, cpu.logits) < 1e-4
    assert relative_error(gpu.map, cpu.map) < 1e-3
    if cpu.layer_gradient is not None:
        assert relative_error(gpu.layer_gradient, cpu.layer_gradient) < 1e-3
    for name in capture:
        assert relative_error(gpu.activations[name], cpu.activations[name]) < 1e-4


@pytest.mark.parametrize("method", ["scorecam", "ablationcam", "occlusion"])
def test_perturbation_maps_on_cuda_equal_the_cpu_ones(lite0, cuda_lite0, cat_bgr, exact_fp32, method):
    """Score-CAM puts every mask of the frame in one batch on a GPU (halving on out-of-memory)."""
    from toolbox.analysis.saliency import saliency_map

    view = lite0.preprocess.model_view(cat_bgr)
    layer = "_blocks.10" if method != "occlusion" else None
    cpu = saliency_map(lite0, lite0.input_tensor([view]), method, 281, layer=layer)
    gpu = saliency_map(cuda_lite0, cuda_lite0.input_tensor([view]), method, 281, layer=layer)
    assert gpu.device.type == "cuda"
    assert relative_error(gpu, cpu) < 1e-3


def test_live_compute_on_cuda_gives_the_cpu_result(lite0, cuda_lite0, cat_bgr):
    """As the live window runs it (TF32 allowed): same top-1, activations on the CPU and close."""
    captured = Captured(Frame(cat_bgr, 0, 0.0), time.perf_counter())
    with LiveCompute(cuda_lite0, cuda_lite0.layers, top_k=5) as gpu_step, LiveCompute(lite0, lite0.layers) as cpu_step:
        gpu = gpu_step(captured, AppState(layer=3))
        cpu = cpu_step(captured, AppState(layer=3))
    assert gpu_step.provider_label == "torch CUDA"
    assert gpu.predictions[0].label == cpu.predictions[0].label and "cat" in gpu.predictions[0].label
    assert set(gpu.activations) == set(lite0.layers)
    for name, act in gpu.activations.items():
        assert act.device.type == "cpu" and act.dtype == torch.float32
        assert relative_error(act, cpu.activations[name]) < 2e-2


def test_onnxruntime_cuda_provider_runs_with_io_binding(tiny_onnx_graph):
    path, module = tiny_onnx_graph
    session = OnnxSession(path, "cuda")
    assert session.providers[0] == "CUDAExecutionProvider", session.provider_label
    assert session.device.type == "cuda" and session.provider_label == "onnx CUDA"

    def host_round_trip(*args, **kwargs):
        raise AssertionError("InferenceSession.run copies through the host: I/O binding was not used")

    session.session.run = host_round_trip
    x = torch.randn(3, 3, 8, 8, device="cuda")
    outputs = session.run(x)
    with torch.inference_mode():
        scores, features = module(x.cpu())
    assert {name: t.device.type for name, t in outputs.items()} == {"scores": "cuda", "features": "cuda"}
    torch.testing.assert_close(outputs["scores"].cpu(), scores, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(outputs["features"].cpu(), features, rtol=1e-4, atol=1e-4)


def test_onnx_frame_analyser_on_cuda_equals_torch(lite0, cat_bgr):
    layers = lite0.layers[:6]
    frame = Frame(cat_bgr, 0, 0.0)
    with OnnxFrameAnalyser(lite0, layers, providers="cuda", exporter="legacy") as onnx, \
            TorchFrameAnalyser(lite0, layers) as reference:
        gpu, cpu = onnx(frame), reference(frame)
    assert onnx.provider_label == "onnx CUDA"
    assert gpu.logits.device.type == "cuda"
    assert int(gpu.logits.argmax()) == int(cpu.logits.argmax())
    for name in layers:
        assert relative_error(gpu.activations[name], cpu.activations[name]) < 2e-2
