"""The onnxruntime session wrapper: provider actually in use, quiet fallback, outputs as tensors."""
from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from toolbox.errors import DeepvisError
from toolbox.models.onnx_runtime import OnnxSession, requested_providers


@pytest.fixture
def graph(tiny_onnx_graph):
    return tiny_onnx_graph


def test_run_returns_every_named_output_as_a_tensor_equal_to_torch(graph):
    path, module = graph
    x = torch.randn(3, 3, 8, 8)
    outputs = OnnxSession(path, "cpu").run(x)
    with torch.inference_mode():
        scores, features = module(x)
    assert list(outputs) == ["scores", "features"]
    torch.testing.assert_close(outputs["scores"], scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs["features"], features, rtol=1e-5, atol=1e-5)


def test_run_can_ask_for_one_output(graph):
    path, _ = graph
    outputs = OnnxSession(path, "cpu").run(torch.zeros(2, 3, 8, 8), ["features"])
    assert list(outputs) == ["features"] and outputs["features"].shape == (2, 4, 8, 8)


def test_cpu_choice_asks_only_for_cpu_and_says_so(graph):
    session = OnnxSession(graph[0], "cpu")
    assert session.requested == ["CPUExecutionProvider"]
    assert session.provider_label == "onnx CPU"


def test_gpu_request_reports_the_provider_in_use_and_a_silent_fallback(graph, capfd):
    session = OnnxSession(graph[0], "auto")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # provider-loading errors are not printed
    assert session.providers == session.session.get_providers()
    if session.provider == "CPU" and "CUDAExecutionProvider" in ort.get_available_providers():
        assert session.provider_label == "onnx CPU (CUDA unavailable)"
    elif session.provider == "CPU":
        assert session.provider_label == "onnx CPU"  # a CPU-only onnxruntime: nothing fell back
    else:
        assert session.provider_label.startswith(f"onnx {session.provider}")
        assert session.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_auto_asks_for_gpu_providers_before_cpu():
    wanted = requested_providers("auto")
    assert wanted[-1] == "CPUExecutionProvider"
    assert [p for p in wanted if p != "CPUExecutionProvider"] == [
        p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in ort.get_available_providers()]


def test_unknown_provider_choice_and_unreadable_graph_are_one_line_errors(tmp_path):
    with pytest.raises(DeepvisError, match="choose one of auto, cpu, cuda, tensorrt"):
        requested_providers("gpu")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    with pytest.raises(DeepvisError, match="onnxruntime cannot load") as error:
        OnnxSession(bad, "cpu")
    assert "\n" not in str(error.value)


def test_session_takes_the_process_thread_count_and_does_not_spin(graph, monkeypatch):
    monkeypatch.setattr("toolbox.models.onnx_runtime.threads_in_use", lambda: 1)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    options = OnnxSession(graph[0], "cpu").session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert OnnxSession(graph[0], "cpu", threads=2).session.get_session_options().intra_op_num_threads == 2


@pytest.mark.parametrize("wanted, tried", [
    (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"]),
    (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
     ["CUDAExecutionProvider", "CPUExecutionProvider"]),
])
def test_a_gpu_provider_alone_also_gets_the_cuda_libraries_preloaded(monkeypatch, wanted, tried):
    from toolbox.models import onnx_runtime

    calls = []
    monkeypatch.setattr(onnx_runtime, "_gpu_libraries", lambda: calls.append(1) or (True, False))  # no TensorRT
    assert onnx_runtime._providers_to_try(wanted) == tried
    assert calls  # preload_dlls() runs before the CUDA provider looks for cuDNN
    calls.clear()
    assert onnx_runtime._providers_to_try(["CPUExecutionProvider"]) == ["CPUExecutionProvider"] and not calls
