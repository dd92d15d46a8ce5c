"""A user's own .onnx classifier as a deepvis model: validated, with its 4-D feature maps as layers.

The graph must take one image input (N, C, H, W) and give class scores as its first output.
Every intermediate tensor that is a (N, C, H, W) feature map with more than one pixel becomes a
layer, named by its tensor name, listed in graph (shallow to deep) order. Shapes are measured by
one probe run, so graphs without shape annotations work too.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from toolbox.config import read_yaml
from toolbox.errors import DeepvisError
from toolbox.models.labels import imagenet_categories, read_labels
from toolbox.models.layers import LayerInfo
from toolbox.models.loaded import LoadedModel
from toolbox.models.preprocess import IMAGENET, Preprocess

GRADIENTS_UNAVAILABLE = "gradients need a torch model; this ONNX graph offers occlusion and RISE"


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise DeepvisError("ONNX models need the onnx package: pip install 'deepvis[onnx]'") from None
    return onnx


@dataclass
class OnnxGraph:
    """The parsed user graph. ``proto`` is the original model with its input shape made concrete
    (C, H, W fixed; N kept dynamic when it was). Layer shapes are (C, H, W) per image."""

    path: Path
    proto: object  # onnx.ModelProto
    input_name: str
    logits_name: str
    num_classes: int
    layer_shapes: dict[str, tuple[int, int, int]]
    layer_ops: dict[str, str]  # tensor name -> the operator that produced it ("Relu", "Add", ...)
    batch_dynamic: bool

    @property
    def layers(self) -> list[str]:
        return list(self.layer_shapes)

    def check_layer(self, name: str) -> str:
        if name not in self.layer_shapes:
            raise DeepvisError(f"unknown layer '{name}': run 'deepvis layers --model {self.path}' to list this graph's layers")
        return name

    def layer_infos(self, names: Sequence[str] | None = None) -> list[LayerInfo]:
        return [LayerInfo(n, self.layer_ops.get(n, "?"), self.layer_shapes[self.check_layer(n)])
                for n in (self.layers if names is None else names)]

    def graph_bytes(self, layers: Sequence[str]) -> bytes:
        """The serialised graph with outputs [logits, *layers] (only those: fewer outputs leave
        onnxruntime more operators to fuse)."""
        onnx = _import_onnx()
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        logits = [o for o in model.graph.output if o.name == self.logits_name]
        del model.graph.output[:]
        model.graph.output.extend(logits)
        batch = "batch" if self.batch_dynamic else 1
        for name in layers:
            shape = [batch, *self.layer_shapes[self.check_layer(name)]]
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape))
        return model.SerializeToString()


def _dim_value(dim) -> int | None:
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _read_graph(path: Path):
    onnx = _import_onnx()
    if not path.is_file():
        raise DeepvisError(f"ONNX file not found: {path} (check the --model path)")
    try:
        model = onnx.load(str(path))
    except Exception:  # noqa: BLE001 - a protobuf parse error, whatever its type
        raise DeepvisError(f"{path} is not an ONNX model: export one with torch.onnx.export") from None
    if len(model.graph.node) == 0 or len(model.graph.output) == 0:
        raise DeepvisError(f"{path} is not an ONNX model with a graph: export one with torch.onnx.export")
    return model


def _image_input(model, path: Path):
    initialisers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initialisers]
    if len(inputs) != 1:
        raise DeepvisError(f"{path} has {len(inputs)} inputs: deepvis needs a graph with one (N, 3, H, W) image input")
    tensor_type = inputs[0].type.tensor_type
    rank = len(tensor_type.shape.dim) if tensor_type.HasField("shape") else 0
    if rank != 4:
        raise DeepvisError(f"{path} input '{inputs[0].name}' has rank {rank}: deepvis needs (N, 3, H, W) images")
    if tensor_type.elem_type != 1:  # TensorProto.FLOAT
        raise DeepvisError(f"{path} input '{inputs[0].name}' is not float32: deepvis feeds float32 images")
    return inputs[0]


def _resolve_input_shape(graph_input, path: Path, preprocess: Preprocess | None) -> tuple[int, int, bool]:
    """Fix C, H, W of the input in place; return (channels, side, batch_dynamic)."""
    dims = graph_input.type.tensor_type.shape.dim
    channels = _dim_value(dims[1]) or 3
    if channels != 3:
        raise DeepvisError(f"{path} takes {channels}-channel input: deepvis feeds 3-channel RGB images")
    height, width = _dim_value(dims[2]), _dim_value(dims[3])
    if preprocess is not None:
        for name, value in (("height", height), ("width", width)):
            if value is not None and value != preprocess.size:
                raise DeepvisError(f"{path} input {name} is {value} but the preprocess config says size "
                                   f"{preprocess.size}: make them agree")
        height = width = preprocess.size
    if height is None or width is None:
        raise DeepvisError(f"{path} has a dynamic input height or width: give the size in a --preprocess "
                           "YAML file (size: 224)")
    if height != width:
        raise DeepvisError(f"{path} takes {height}x{width} input: deepvis needs a square input")
    batch_dynamic = _dim_value(dims[0]) is None
    for dim, value in zip(dims[1:], (channels, height, width)):
        dim.Clear()
        dim.dim_value = value
    if batch_dynamic:
        dims[0].Clear()
        dims[0].dim_param = "batch"
    return channels, height, batch_dynamic


def _probe_shapes(model, input_name: str, side: int, path: Path) -> dict[str, tuple[int, ...]]:
    """Shape (per image, batch 1) of every node output and of the first graph output, from one run."""
    from toolbox.models.onnx_runtime import OnnxSession

    onnx = _import_onnx()
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    first = probe.graph.output[0]
    del probe.graph.output[:]
    probe.graph.output.append(first)
    seen = {first.name}
    for node in probe.graph.node:
        for name in node.output:
            if name and name not in seen:
                seen.add(name)
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = OnnxSession(probe.SerializeToString(), providers="cpu")
    try:
        values = session.session.run(None, {input_name: np.zeros((1, 3, side, side), np.float32)})
    except Exception as exc:  # noqa: BLE001
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DeepvisError(f"{path} fails on a (1, 3, {side}, {side}) input: {first_line[:160]}") from None
    return {name: tuple(np.shape(v)) for name, v in zip(session.output_names, values)
            if isinstance(v, np.ndarray) and v.dtype == np.float32}


def read_preprocess(path: str | Path) -> Preprocess:
    """A YAML file with size (int), mean and std (3 numbers each, RGB), optional scale
    (x_model = (rgb01 * scale - mean) / std) -> Preprocess."""
    data = read_yaml(path)
    unknown = set(data) - {"size", "mean", "std", "scale"}
    if unknown:
        raise DeepvisError(f"preprocess config {path}: unknown key '{sorted(unknown)[0]}' (accepted: size, mean, std, scale)")
    size = data.get("size")
    if not isinstance(size, int) or size < 8:
        raise DeepvisError(f"preprocess config {path}: 'size' must be an integer of 8 or more (input side in pixels)")

    def triple(key, default):
        value = data.get(key, list(default))
        if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
            raise DeepvisError(f"preprocess config {path}: '{key}' must be a list of 3 numbers (R, G, B)")
        return tuple(float(v) for v in value)

    scale = data.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or scale <= 0:
        raise DeepvisError(f"preprocess config {path}: 'scale' must be a positive number")
    return Preprocess(size, triple("mean", IMAGENET.mean), triple("std", IMAGENET.std), float(scale))


def _categories(labels: str | Path | None, num_classes: int) -> tuple[str, ...]:
    if labels is None:
        return imagenet_categories() if num_classes == 1000 else tuple(f"class {i}" for i in range(num_classes))
    if not Path(labels).is_file():
        raise DeepvisError(f"labels file not found: {labels} (one class name per line)")
    names = read_labels(labels)
    if len(names) != num_classes:
        raise DeepvisError(f"labels file {labels} has {len(names)} names but the model gives {num_classes} scores: "
                           "one name per line, in output order")
    return names


def load_onnx_model(path: str | Path, labels: str | Path | None = None, preprocess: str | Path | None = None) -> LoadedModel:
    """A LoadedModel (module=None, onnx=OnnxGraph) for a user's .onnx classifier.

    labels: text file, one class name per line (default: ImageNet names for 1000 scores).
    preprocess: YAML file (see read_preprocess); default ImageNet mean/std at the graph's input size.
    """
    path = Path(path)
    model = _read_graph(path)
    graph_input = _image_input(model, path)
    custom = read_preprocess(preprocess) if preprocess is not None else None
    _, side, batch_dynamic = _resolve_input_shape(graph_input, path, custom)
    shapes = _probe_shapes(model, graph_input.name, side, path)
    logits_name = model.graph.output[0].name
    logits_shape = shapes.get(logits_name)
    if not logits_shape or logits_shape[0] != 1:
        raise DeepvisError(f"{path} first output '{logits_name}' is not one row of class scores per image")
    num_classes = int(np.prod(logits_shape[1:]))
    layer_shapes = {name: shape[1:] for name, shape in shapes.items()
                    if name != logits_name and len(shape) == 4 and shape[0] == 1 and shape[2] * shape[3] > 1}
    if not layer_shapes:
        raise DeepvisError(f"{path} has no 4-D feature maps to show: deepvis needs a convolutional network")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    ops = {name: node.op_type for node in model.graph.node for name in node.output}
    graph = OnnxGraph(path, model, graph_input.name, logits_name, num_classes, layer_shapes, ops, batch_dynamic)
    return LoadedModel(
        name=path.name,
        module=None,
        preprocess=custom or Preprocess(side, IMAGENET.mean, IMAGENET.std),
        categories=_categories(labels, num_classes),
        layers=graph.layers,
        weights=str(path),
        weights_id=digest,
        onnx=graph,
    )
