"""Receptive fields: which input pixels a unit of a layer can see.

``receptive_field(model, layer)`` is analytic: it runs one forward pass, then walks the autograd
graph from the layer back to the input, composing the geometry of every convolution and pooling
(kernel, stride, padding, dilation) and taking the union over branches (residual adds,
concatenations). Nothing is hard-coded per model. Ops that mix all positions (global pooling,
squeeze-excite) make the field global. Graphs with ops it does not know (upsampling, reshapes of
the spatial axes) fall back to ``measured_receptive_field``, the gradient-based measurement that
the tests also use to check the analytic one.

Unit (i, j) of the layer sees input rows [offset_y + i * stride_y, offset_y + i * stride_y + size_y),
likewise columns; offsets can be negative (padding), so boxes are clipped to the image when cropping.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from toolbox.errors import DeepvisError
from toolbox.models.capture import ActivationCapture
from toolbox.models.registry import LoadedModel

# Autograd nodes that keep every position in place (elementwise, normalisation, channel concat...).
_POINTWISE = ("BatchNorm", "Hardtanh", "Relu", "Threshold", "Add", "Sub", "Mul", "Div", "Clone", "Sigmoid",
              "Silu", "Gelu", "Hardswish", "Hardsigmoid", "Tanh", "LeakyRelu", "Elu", "ToCopy", "Neg", "Clamp",
              "Dropout", "Pow", "Sqrt", "Rsqrt", "Exp", "Abs", "Expand", "Alias", "Contiguous", "Softplus", "Mish")
_GLOBAL = ("Mean", "AdaptiveAvgPool", "AdaptiveMaxPool", "Sum", "Amax", "Max", "Std", "Var")


@dataclass(frozen=True)
class ReceptiveField:
    """size, stride, offset: (y, x) pixels of the input at model resolution. is_global: every unit
    sees the whole input (then only ``box`` clipped to the image is meaningful)."""

    size: tuple[int, int]
    stride: tuple[int, int]
    offset: tuple[int, int]
    is_global: bool = False

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1), end exclusive, not clipped."""
        y0 = self.offset[0] + i * self.stride[0]
        x0 = self.offset[1] + j * self.stride[1]
        return y0, x0, y0 + self.size[0], x0 + self.size[1]

    def clipped_box(self, i: int, j: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``box`` clipped to an image of height x width."""
        if self.is_global:
            return 0, 0, height, width
        y0, x0, y1, x1 = self.box(i, j)
        return max(y0, 0), max(x0, 0), min(y1, height), min(x1, width)


# Per axis: (size, jump, start). A unit o covers input pixels [start + o*jump, start + o*jump + size).
_Axis = tuple[int, int, int]
_GLOBAL_FIELD = "global"


def _compose(inner: _Axis, kernel: int, stride: int, padding: int, dilation: int) -> _Axis:
    size, jump, start = inner
    return size + dilation * (kernel - 1) * jump, jump * stride, start - padding * jump


def _union(fields: list) -> object:
    fields = [f for f in fields if f is not None]
    if not fields:
        return None
    if any(f == _GLOBAL_FIELD for f in fields):
        return _GLOBAL_FIELD
    axes = []
    for axis in range(2):
        parts = [f[axis] for f in fields]
        jump = max(p[1] for p in parts)
        start = min(p[2] for p in parts)
        end = max(p[2] + p[0] for p in parts)
        axes.append((end - start, jump, start))
    return tuple(axes)


class _Unsupported(Exception):
    pass


def _node_field(node, inputs: list, leaf_ids: set[int]):
    """Field of ``node``'s output from its inputs' fields (None: does not depend on the image)."""
    name = type(node).__name__
    for backend in ("Native", "Cudnn", "Miopen", "Mkldnn"):
        name = name.removeprefix(backend)
    if name == "AccumulateGrad":
        return ((1, 1, 0), (1, 1, 0)) if id(node.variable) in leaf_ids else None
    first = inputs[0] if inputs else None
    if name.startswith("Convolution"):
        if first is None or first == _GLOBAL_FIELD:
            return first
        if node._saved_transposed:
            raise _Unsupported(name + " (transposed)")
        kernel = node._saved_weight.shape[-2:]
        return tuple(_compose(first[a], int(kernel[a]), node._saved_stride[a], node._saved_padding[a],
                              node._saved_dilation[a]) for a in range(2))
    if "Pool2D" in name and not name.startswith("Adaptive"):
        if first is None or first == _GLOBAL_FIELD:
            return first
        k, s, p = node._saved_kernel_size, node._saved_stride or node._saved_kernel_size, node._saved_padding
        d = getattr(node, "_saved_dilation", (1, 1))
        pair = lambda v: (v[0], v[-1]) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        k, s, p, d = pair(k), pair(s), pair(p), pair(d)
        return tuple(_compose(first[a], k[a], s[a], p[a], d[a]) for a in range(2))
    if name.startswith("Cat") and node._saved_dim in (-1, -2, 2, 3):
        raise _Unsupported(name + " along a spatial axis")
    if name.startswith(_POINTWISE) or name.startswith("Cat"):
        return _union(inputs)
    if name.startswith(_GLOBAL):
        return None if all(f is None for f in inputs) else _GLOBAL_FIELD
    if all(f is None for f in inputs):
        return None  # e.g. views of weights, which do not depend on the image
    raise _Unsupported(name)


def _graph_field(output: torch.Tensor, leaf: torch.Tensor):
    """Walk the autograd graph from ``output`` back to ``leaf`` (iteratively; graphs are deep)."""
    memo: dict = {}
    leaf_ids = {id(leaf)}
    stack = [(output.grad_fn, False)]
    while stack:
        node, expanded = stack.pop()
        if node is None or node in memo:
            continue
        children = [n for n, _ in node.next_functions if n is not None]
        if not expanded:
            stack.append((node, True))
            stack.extend((c, False) for c in children if c not in memo)
            continue
        memo[node] = _node_field(node, [memo[c] for c in children], leaf_ids)
    return memo[output.grad_fn]


def _probe_input(model: LoadedModel, size: int | None) -> torch.Tensor:
    side = size or model.preprocess.size
    x = torch.zeros(1, 3, side, side, device=model.device, requires_grad=True)
    return x


def receptive_field(model: LoadedModel, layer: str, size: int | None = None) -> ReceptiveField:
    """The layer's receptive field from the layer hyper-parameters (see the module docstring)."""
    x = _probe_input(model, size)
    with ActivationCapture(model.module, [layer], keep_graph=True, gated=True) as capture, capture.recording(), \
            torch.enable_grad():
        model.module(x)
    act = capture.activations.get(layer)
    if act is None or act.dim() != 4:
        raise DeepvisError(f"layer '{layer}' has no (C, H, W) feature map, so no receptive field: pick a conv layer")
    if act.grad_fn is None:
        raise DeepvisError(f"layer '{layer}' does not depend on the input")
    try:
        field = _graph_field(act, x)
    except _Unsupported:
        return measured_receptive_field(model, layer, size)
    if field == _GLOBAL_FIELD:
        side = x.shape[-1]
        return ReceptiveField((side, side), (1, 1), (0, 0), is_global=True)
    (sy, jy, oy), (sx, jx, ox) = field
    return ReceptiveField((sy, sx), (jy, jx), (oy, ox))


def measured_receptive_field(model: LoadedModel, layer: str, size: int | None = None, samples: int = 4,
                             seed: int = 0) -> ReceptiveField:
    """Receptive field measured from gradients: the input pixels where d(unit)/d(input) is non-zero
    for the centre unit, its diagonal neighbour and unit (0, 0), over ``samples`` random inputs.

    Exact while the centre unit's window lies inside the image (choose ``size`` large enough):
    the stride is the distance between neighbouring windows, the offset comes from the centre
    window's start and the size from where unit (0, 0)'s window ends.
    """
    side = size or model.preprocess.size
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(samples, 3, side, side, generator=gen) * 4 - 2).to(model.device).requires_grad_(True)
    with ActivationCapture(model.module, [layer], keep_graph=True, gated=True) as capture, capture.recording(), \
            torch.enable_grad():
        model.module(x)
    act = capture.activations[layer]
    h, w = act.shape[-2:]

    def extent(i: int, j: int) -> tuple[tuple[int, int], tuple[int, int]]:
        (grad,) = torch.autograd.grad(act[:, :, i, j].sum(), x, retain_graph=True)
        mask = grad.abs().sum(dim=(0, 1)) > 0
        rows = torch.nonzero(mask.any(dim=1)).flatten()
        cols = torch.nonzero(mask.any(dim=0)).flatten()
        return (int(rows[0]), int(rows[-1]) + 1), (int(cols[0]), int(cols[-1]) + 1)

    ci, cj = h // 2, w // 2
    (cy0, cy1), (cx0, cx1) = extent(ci, cj)
    (ay0, ay1), (ax0, ax1) = extent(0, 0)
    if (cy0, cx0) == (0, 0) and (cy1, cx1) == (side, side) and (ay1, ax1) == (side, side):
        return ReceptiveField((side, side), (1, 1), (0, 0), is_global=True)
    # Stride: how far the window of the next unit starts from the centre unit's.
    (ny0, _), (nx0, _) = extent(min(ci + 1, h - 1), min(cj + 1, w - 1))
    stride = (ny0 - cy0 if h > 1 else side, nx0 - cx0 if w > 1 else side)
    # Unit (0, 0) ends at offset + size; the centre unit starts at offset + ci * stride.
    oy, ox = cy0 - ci * stride[0], cx0 - cj * stride[1]
    size_y, size_x = ay1 - oy, ax1 - ox
    return ReceptiveField((size_y, size_x), stride, (oy, ox))
