"""One forward pass, then gradients of a target score with respect to the input and/or one layer.

The shared engine of every gradient method. It never mutates the model: trainable parameters are
frozen for the call and restored (so no parameter gradient is ever computed), hooks live only for
the forward pass and act only on the calling thread's forwards, gradients come from
``torch.autograd.grad`` (nothing accumulates in ``.grad``), and the caller's input tensor is
copied, never marked as requiring grad.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator, Sequence

import torch
from torch import nn

from toolbox.analysis.saliency.rectifiers import Rule, rectifier_rules
from toolbox.analysis.saliency.targets import ClassTarget, Target, UnitTarget, target_scores
from toolbox.errors import DeepvisError
from toolbox.models.capture import register_own_forward_hook, resolve_module


@dataclass
class BackpropResult:
    """logits: (N, classes); activations: {layer: (N, C, h, w)} detached; layer_gradient:
    d score / d activation of ``layer`` (N, C, h, w) or None; input_gradient: (N, 3, H, W) or None;
    class_index: (N,) the class explained per image (None for unit targets)."""

    logits: torch.Tensor
    activations: dict[str, torch.Tensor]
    layer_gradient: torch.Tensor | None
    input_gradient: torch.Tensor | None
    class_index: torch.Tensor | None


@contextlib.contextmanager
def input_gradients_only(model: nn.Module) -> Iterator[None]:
    """Freeze trainable parameters for the block and restore their flags after it."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _as_tensor(output, name: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise DeepvisError(f"layer '{name}' outputs a {type(output).__name__}, not a tensor: pick another layer")


class _LayerTaps:
    """Forward hooks that keep layer outputs attached to the graph.

    Each hook stores the layer's output and hands the network a clone, so in-place ops further on
    (ReLU(inplace=True), residual +=) change the clone and the stored tensor keeps its values; the
    gradient reaching the clone is the gradient of the stored tensor. With ``cut``, the stored
    tensor is a fresh leaf: autograd records nothing before that layer and backward stops there.
    The hooks act only on forwards of the thread that entered the block, so another thread's
    forward through the same model (a dream in the live window) is neither recorded nor cut.
    """

    def __init__(self, model: nn.Module, graph_layers: Sequence[str], detached_layers: Sequence[str], cut: str | None):
        self.stored: dict[str, torch.Tensor] = {}
        self._handles = []
        names = dict.fromkeys([*graph_layers, *detached_layers])
        self._plan = [(name, resolve_module(model, name), name in graph_layers) for name in names]
        self._cut = cut

    def _hook(self, name: str, keep_graph: bool):
        def tap(module, inputs, output):
            out = _as_tensor(output, name)
            if name == self._cut:
                out = out.detach().requires_grad_()
            elif not keep_graph:
                self.stored[name] = out.detach().clone()
                return None
            self.stored[name] = out
            return out.clone()

        return tap

    def __enter__(self) -> "_LayerTaps":
        for name, module, keep_graph in self._plan:
            self._handles.append(register_own_forward_hook(module, self._hook(name, keep_graph)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def backprop(model: nn.Module, x: torch.Tensor, target: Target, *, input_rule: Rule | None = "plain",
             layer: str | None = None, layer_rule: Rule | None = None, capture: Sequence[str] = (),
             rule_hooks: Callable[[], ContextManager] | None = None, relevance: bool = False) -> BackpropResult:
    """Forward ``x`` (N, 3, H, W) once; differentiate the summed target scores.

    input_rule: rectifier rule for the input gradient, or None for no input gradient (then the
      graph is cut at ``layer`` and only the network after it is differentiated).
    layer / layer_rule: also return the gradient at this layer's output (rule defaults to
      input_rule, else plain). With equal rules both gradients come from one backward pass.
    capture: more layers whose activations to return (detached), e.g. for the activation mosaic.
    rule_hooks: a context factory entered around the forward and the backward (LRP's rule hooks).
    relevance: start the backward from the score itself instead of 1 (d objective / d score =
      score), so relevance methods distribute the score's value.
    """
    if input_rule is None and layer is None:
        raise ValueError("backprop needs an input rule, a layer, or both")
    layer_rule = layer_rule or input_rule or "plain"
    rules = {r for r in (input_rule, layer_rule if layer else None) if r is not None}
    graph_layers = [n for n in (layer, target.layer if isinstance(target, UnitTarget) else None) if n]
    cut = layer if input_rule is None else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(input_gradients_only(model))
        if rule_hooks is not None:
            stack.enter_context(rule_hooks())
        x_in = x.detach().clone().requires_grad_(input_rule is not None)
        with contextlib.ExitStack() as forward:
            taps = forward.enter_context(_LayerTaps(model, graph_layers, capture, cut))
            state = forward.enter_context(rectifier_rules(model, input_rule)) if rules - {"plain"} else None
            logits = model(x_in)
        if isinstance(target, UnitTarget) and cut and target.layer != cut and not taps.stored[target.layer].requires_grad:
            raise DeepvisError(f"unit layer '{target.layer}' comes before layer '{layer}': pick a layer before the unit")
        scores = target_scores(target, logits, taps.stored)
        objective = (scores * scores.detach()).sum() if relevance else scores.sum()
        requests: list[tuple[Rule, list[str]]] = []
        if layer is not None and input_rule is not None and layer_rule == input_rule:
            requests.append((input_rule, ["layer", "input"]))
        else:
            if layer is not None:
                requests.append((layer_rule, ["layer"]))
            if input_rule is not None:
                requests.append((input_rule, ["input"]))
        grads: dict[str, torch.Tensor] = {}
        for i, (rule, wanted) in enumerate(requests):
            if state is not None:
                state.rule = rule
            tensors = [taps.stored[layer] if w == "layer" else x_in for w in wanted]
            result = torch.autograd.grad(objective, tensors, retain_graph=i + 1 < len(requests), allow_unused=True)
            for w, g in zip(wanted, result):
                if g is None:
                    raise DeepvisError(f"the target does not depend on layer '{layer}': pick a layer before the target")
                grads[w] = g
    class_index = None
    if isinstance(target, ClassTarget):
        class_index = logits.detach().argmax(1) if target.index is None else torch.full(
            (logits.shape[0],), target.index, device=logits.device)
    activations = {name: t.detach() for name, t in taps.stored.items()}
    return BackpropResult(logits.detach(), activations, grads.get("layer"), grads.get("input"), class_index)
