"""Export a registered torch model to ONNX with its visualisable layers as extra graph outputs.

The exported graph takes ``input`` (N, 3, S, S) float32, N dynamic, and returns ``logits``
(N, num_classes) followed by one output per layer, named by the layer's dotted module name, each
(N, C, H, W) exactly as the torch forward hook would see it. Files are cached on disk under
``cache_dir()`` and keyed by model name, weights hash, input size, layer set, exporter and torch
version, so any change of those gives a new file and an unchanged model reuses the old one.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from toolbox.atomic import atomic_path
from toolbox.cache import cache_root
from toolbox.errors import DeepvisError
from toolbox.models.capture import resolve_module

INPUT_NAME = "input"
LOGITS_NAME = "logits"
EXPORTERS = ("dynamo", "legacy")
OPSET = 18
MISSING_PACKAGES = "ONNX export needs the packages onnx and onnxscript: pip install 'deepvis[onnx]'"


def cache_dir() -> Path:
    """Where exported graphs live: <cache_root>/onnx."""
    return cache_root() / "onnx"


def require_export_packages(exporter: str = "dynamo") -> None:
    """Raise a one-line DeepvisError if the packages the exporter needs are missing."""
    try:
        import onnx  # noqa: F401

        if exporter == "dynamo":
            import onnxscript  # noqa: F401
    except ImportError:
        raise DeepvisError(MISSING_PACKAGES) from None


class _WithLayerOutputs(nn.Module):
    """forward(x) -> (logits, *layer outputs). Hooks live only for the duration of one forward,
    so the wrapped model is left without hooks whether tracing succeeds or not."""

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        super().__init__()
        self.model = model
        self.layers = list(layers)
        self._targets = [resolve_module(model, name) for name in self.layers]

    def forward(self, x: torch.Tensor):
        store: dict[str, torch.Tensor] = {}

        def hook_for(name):
            def record(module, inputs, output):
                tensor = output if isinstance(output, torch.Tensor) else output[0]
                # A copy, as ActivationCapture keeps: later in-place ops must not change it.
                store[name] = tensor.clone()

            return record

        handles = [m.register_forward_hook(hook_for(n)) for n, m in zip(self.layers, self._targets)]
        try:
            logits = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        return (logits, *[store[name] for name in self.layers])


def export_key(model, layers: Sequence[str], exporter: str = "dynamo") -> dict:
    """Everything the exported graph depends on; its hash names the cached file."""
    return {
        "model": model.name,
        "weights_id": model.weights_id,
        "input_size": model.preprocess.size,
        "layers": list(layers),
        "exporter": exporter,
        "opset": OPSET,
        "torch": torch.__version__,
    }


def cached_path(model, layers: Sequence[str], exporter: str = "dynamo", directory: Path | None = None) -> Path:
    key = json.dumps(export_key(model, layers, exporter), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in model.name)
    return (directory or cache_dir()) / f"{safe_name}-{model.preprocess.size}px-{digest}.onnx"


def _export(wrapper: nn.Module, x: torch.Tensor, path: Path, output_names: list[str], exporter: str) -> None:
    with warnings.catch_warnings():
        # The legacy exporter's DeprecationWarning and torch.export's tracing chatter are not news to the user.
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(wrapper, (x,), str(path), dynamo=True, input_names=[INPUT_NAME],
                              output_names=output_names, dynamic_shapes=({0: torch.export.Dim("batch")},),
                              external_data=False, opset_version=OPSET, verbose=False)
        else:
            torch.onnx.export(wrapper, (x,), str(path), dynamo=False, input_names=[INPUT_NAME],
                              output_names=output_names, opset_version=OPSET,
                              dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *output_names]})


def export_onnx(model, layers: Sequence[str] | None = None, exporter: str = "dynamo",
                directory: Path | None = None) -> Path:
    """Path of the ONNX graph of ``model`` (a LoadedModel with a torch module) with ``layers``
    (default: its visualisable layers) as extra outputs; exported on first use, then reused.

    exporter: "dynamo" (torch.export based, torch's default) or "legacy" (TorchScript tracing,
    faster to export, deprecated). If dynamo fails on a model, the legacy exporter is tried.
    """
    if exporter not in EXPORTERS:
        raise DeepvisError(f"unknown ONNX exporter '{exporter}': choose one of {', '.join(EXPORTERS)}")
    if model.module is None:
        raise DeepvisError(f"model {model.name} is already an ONNX graph: nothing to export")
    layers = list(model.layers if layers is None else layers)
    path = cached_path(model, layers, exporter, directory)
    if path.is_file():
        return path
    require_export_packages(exporter)
    wrapper = _WithLayerOutputs(model.module, layers).eval()
    # Batch 2, so that the exporter cannot specialise the batch dimension to 1.
    x = torch.zeros(2, 3, model.preprocess.size, model.preprocess.size, device=model.device)
    x = model._layout(x)
    output_names = [LOGITS_NAME, *layers]
    errors = []
    for attempt in (exporter, "legacy") if exporter == "dynamo" else (exporter,):
        try:
            with atomic_path(path) as tmp:
                _export(wrapper, x, tmp, output_names, attempt)
            return path
        except ImportError:
            raise DeepvisError(MISSING_PACKAGES) from None
        except Exception as exc:  # noqa: BLE001 - exporter failures come in many types
            errors.append(f"{attempt}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise DeepvisError(f"cannot export {model.name} to ONNX ({'; '.join(errors)}): use --backend torch")
