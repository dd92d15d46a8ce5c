"""One onnxruntime session: provider choice, fallback detection, quiet logs, I/O binding on CUDA.

onnxruntime-gpu lists TensorRT and CUDA as available whenever it was built with them, and when
their libraries or the driver are missing it falls back to CPU without raising. The provider
actually in use is therefore read back from the session, and ``provider_label`` says so.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from toolbox.cpu_threads import spinning_allowed, threads_in_use
from toolbox.errors import DeepvisError

PROVIDER_CHOICES = ("auto", "cpu", "cuda", "tensorrt")
_SHORT = {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA", "CPUExecutionProvider": "CPU"}
_GPU = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def import_onnxruntime():
    """The onnxruntime module with its default logger silenced (provider-loading errors are
    reported through ``provider_label`` instead), or a one-line DeepvisError."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise DeepvisError("the onnx backend needs onnxruntime: pip install onnxruntime-gpu (or onnxruntime)") from None
    ort.set_default_logger_severity(4)
    return ort


def requested_providers(choice: str = "auto") -> list[str]:
    """Providers wanted, best first, among those this onnxruntime build has.

    auto: TensorRT, CUDA, CPU; tensorrt: TensorRT, CUDA, CPU; cuda: CUDA, CPU; cpu: CPU.
    """
    if choice not in PROVIDER_CHOICES:
        raise DeepvisError(f"unknown onnxruntime device '{choice}': choose one of {', '.join(PROVIDER_CHOICES)}")
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    wanted = {"auto": _GPU, "tensorrt": _GPU, "cuda": _GPU[1:], "cpu": ()}[choice]
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def _loadable(*names: str) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            pass
    return False


@functools.lru_cache(maxsize=1)
def _gpu_libraries() -> tuple[bool, bool]:
    """(CUDA driver present, TensorRT present). Without TensorRT's libraries onnxruntime prints a
    multi-line "EP Error" and retries, so TensorRT is only asked for when it can load. With a
    driver, preload_dlls() lets the CUDA provider find the CUDA/cuDNN libraries torch ships."""
    driver = _loadable("libcuda.so.1", "nvcuda.dll")
    tensorrt = driver and _loadable("libnvinfer.so.10", "libnvinfer.so", "nvinfer_10.dll")
    if driver:
        ort = import_onnxruntime()
        with contextlib.suppress(Exception):
            ort.preload_dlls()
    return driver, tensorrt


def _providers_to_try(wanted: list[str]) -> list[str]:
    """``wanted`` less TensorRT when its libraries cannot load. Any GPU provider first has the
    CUDA libraries preloaded (_gpu_libraries), CUDA alone as well as TensorRT."""
    if not any(p in _GPU for p in wanted):
        return wanted
    if not _gpu_libraries()[1]:
        return [p for p in wanted if p != "TensorrtExecutionProvider"]
    return wanted


def _provider_options(provider: str, cache: Path | None) -> dict:
    if provider == "TensorrtExecutionProvider" and cache is not None:
        # Engines take minutes to build; keep them next to the ONNX files.
        return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache / "tensorrt"),
                "trt_timing_cache_enable": True}
    return {}


def _ort_element_type(dtype: torch.dtype):
    return {torch.float32: np.float32, torch.float16: np.float16}[dtype]


class OnnxSession:
    """An onnxruntime InferenceSession on one graph with one (N, C, H, W) input.

    run(x) takes a torch tensor and returns {output name: torch tensor}. On CUDA (when torch
    also sees the GPU) inputs and outputs are bound to device memory with I/O binding, so
    nothing crosses to the host; otherwise outputs are CPU tensors sharing onnxruntime's buffers.
    """

    def __init__(self, model: str | os.PathLike | bytes, providers: str | Sequence[str] = "auto",
                 cache: Path | None = None, threads: int | None = None):
        ort = import_onnxruntime()
        self.requested = requested_providers(providers) if isinstance(providers, str) else list(providers)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = threads or threads_in_use()  # None: onnxruntime's default, one per physical core
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # the graph runs sequentially; no inter-op pool is needed
        if not spinning_allowed():  # as OpenMP's threads: sleep when idle (toolbox.cpu_threads)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        source = model if isinstance(model, bytes) else str(model)
        tried = _providers_to_try(self.requested)
        # Plain onnxruntime warns about providers it lacks; onnxruntime-gpu prints provider failures.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            try:
                self.session = ort.InferenceSession(
                    source, sess_options=options, providers=[(p, _provider_options(p, cache)) for p in tried])
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise DeepvisError(f"onnxruntime cannot load this graph: {first[:200]}") from None
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self._output_shapes = {o.name: o.shape for o in self.session.get_outputs()}
        self.on_gpu = self.providers[0] in _GPU
        self.device = torch.device("cuda") if self.on_gpu and torch.cuda.is_available() else torch.device("cpu")

    @property
    def provider(self) -> str:
        """Short name of the provider in use: "TensorRT", "CUDA" or "CPU"."""
        return _SHORT.get(self.providers[0], self.providers[0])

    @property
    def provider_label(self) -> str:
        """For the status line, e.g. "onnx CUDA" or "onnx CPU (CUDA unavailable)"."""
        label = f"onnx {self.provider}"
        missing = [_SHORT[p] for p in self.requested if p in _GPU and p not in self.providers]
        if missing:  # on CPU after asking for TensorRT and CUDA, CUDA is the one worth naming
            label += f" ({missing[-1]} unavailable)"
        return label

    def run(self, x: torch.Tensor, outputs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """(N, C, H, W) float32 input -> {name: tensor} for ``outputs`` (default: all)."""
        names = list(self.output_names if outputs is None else outputs)
        if self.device.type == "cuda":
            return self._run_bound(x, names)
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        values = self.session.run(names, {self.input_name: array})
        return {name: torch.from_numpy(value) for name, value in zip(names, values)}

    def _run_bound(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        x = x.detach().to(self.device, torch.float32).contiguous()
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", self.device.index or 0, np.float32, tuple(x.shape), x.data_ptr())
        results: dict[str, torch.Tensor] = {}
        unknown = []
        for name in names:
            shape = self._output_shapes[name]
            dims = [x.shape[0] if i == 0 and not isinstance(d, int) else d for i, d in enumerate(shape)]
            if all(isinstance(d, int) and d > 0 for d in dims):
                out = torch.empty(dims, dtype=torch.float32, device=self.device)
                binding.bind_output(name, "cuda", self.device.index or 0, np.float32, tuple(dims), out.data_ptr())
                results[name] = out
            else:
                binding.bind_output(name, "cuda")  # onnxruntime allocates; copied out below
                unknown.append(name)
        torch.cuda.current_stream(self.device).synchronize()  # torch's writes to x land before onnxruntime reads
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        if unknown:
            values = dict(zip(names, binding.get_outputs()))
            for name in unknown:
                results[name] = torch.from_numpy(values[name].numpy()).to(self.device)
        return {name: results[name] for name in names}
