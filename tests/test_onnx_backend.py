"""Backend choice: the onnxruntime analyser matches the torch one, the factory, auto's cached
measurement, and the analyze job on --backend onnx."""
from __future__ import annotations

import json

import pytest
import torch

from toolbox.analysis import backend_choice
from toolbox.analysis.backend_choice import BackendChoice, choose_backend, make_frame_analyser
from toolbox.analysis.onnx_frame_analysis import OnnxFrameAnalyser, TorchFrameAnalyser
from toolbox.cli import main
from toolbox.errors import DeepvisError
from toolbox.models.capture import has_hooks
from toolbox.sources.frame import Frame

TOLERANCE = dict(rtol=1e-4, atol=1e-4)


def test_onnx_frame_analyser_gives_the_torch_frame_result(lite0, cat_bgr):
    frame = Frame(cat_bgr, 3, 0.1)
    with make_frame_analyser(lite0, None, "torch") as analyser:
        expected = analyser(frame)
    with make_frame_analyser(lite0, None, "onnx", providers="cpu") as analyser:
        assert isinstance(analyser, OnnxFrameAnalyser) and analyser.provider_label == "onnx CPU"
        result = analyser(frame)
    assert result.frame is frame and (result.view == expected.view).all()
    torch.testing.assert_close(result.logits, expected.logits, **TOLERANCE)
    assert list(result.activations) == list(expected.activations) == lite0.layers
    for name, act in expected.activations.items():
        torch.testing.assert_close(result.activations[name], act, **TOLERANCE)
    assert result.forward_ms > 0


def test_batch_forward_of_both_backends_agree_and_torch_capture_stays_clean(lite0, cat_bgr):
    x = torch.cat([lite0.input_tensor(lite0.preprocess.model_view(cat_bgr))] * 3)
    x[1] = 0.0
    onnx_logits = OnnxFrameAnalyser(lite0, None, providers="cpu").forward_logits(x, batch_size=2)
    with TorchFrameAnalyser(lite0) as analyser:
        torch_logits = analyser.forward_logits(x)
        assert analyser._capture.activations == {}  # the batch did not go through the capture hooks
        analyser(Frame(cat_bgr, 0, 0.0))
        assert list(analyser._capture.activations) == lite0.layers  # and the hooks came back
    assert not has_hooks(lite0.module)
    torch.testing.assert_close(onnx_logits, torch_logits, **TOLERANCE)


def test_factory_gives_torch_when_the_view_needs_gradients(lite0):
    analyser = make_frame_analyser(lite0, lite0.layers[:2], backend="onnx", needs_gradients=True)
    assert isinstance(analyser, TorchFrameAnalyser) and analyser.supports_gradients
    assert analyser.provider_label == "torch CPU (gradients)"
    assert make_frame_analyser(lite0, None, "torch").provider_label == "torch CPU"
    with pytest.raises(DeepvisError, match="choose one of torch, onnx, auto"):
        make_frame_analyser(lite0, None, "tensorflow")


def _fake_measure(calls, backend="onnx"):
    def measure(model, layers, providers="auto", runs=8, warmup=2, threads=None):
        calls.append(list(layers))
        return BackendChoice(backend, 10.0, 5.0 if backend == "onnx" else 20.0, "onnx CPU", cached=False)

    return measure


def test_auto_measures_once_per_model_and_layer_set_then_reads_the_cache(lite0, monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPVIS_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(backend_choice, "measure_backends", _fake_measure(calls))
    first = choose_backend(lite0, lite0.layers)
    again = choose_backend(lite0, lite0.layers)
    other = choose_backend(lite0, lite0.layers[:3])
    assert (first.backend, first.cached, again.backend, again.cached) == ("onnx", False, "onnx", True)
    assert calls == [lite0.layers, lite0.layers[:3]] and not other.cached
    assert len(json.loads((tmp_path / backend_choice.CACHE_FILE).read_text())) == 2
    assert choose_backend(lite0, lite0.layers, refresh=True).cached is False and len(calls) == 3


def test_auto_builds_the_backend_it_chose(lite0, monkeypatch, tmp_path):
    monkeypatch.setenv("DEEPVIS_CACHE", str(tmp_path))
    monkeypatch.setattr(backend_choice, "measure_backends", _fake_measure([], backend="torch"))
    assert isinstance(make_frame_analyser(lite0, None, "auto"), TorchFrameAnalyser)


def test_auto_measures_both_backends_for_real(lite0):
    """The real measurement (the graph exported above is reused). No speed is asserted, only
    that the faster of the two measured is the one chosen."""
    choice = backend_choice.measure_backends(lite0, lite0.layers, providers="cpu", runs=2, warmup=1)
    assert choice.torch_ms > 0 and choice.onnx_ms > 0 and choice.provider == "onnx CPU"
    assert choice.backend == ("onnx" if choice.onnx_ms < choice.torch_ms else "torch")


def test_analyze_job_runs_on_the_onnx_backend(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", "demo", "--out", str(out), "--backend", "onnx", "--device", "cpu", "--every", "40",
                 "--max-frames", "2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "onnx CPU" and summary["frames_processed"] == 2
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["top5"]
