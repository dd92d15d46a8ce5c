"""Backward rules for rectifiers (guided backprop, deconvnet) without touching the model.

Every rectifier call made while ``rectifier_rules`` is active is routed through ``_Rectify``,
an autograd function whose forward is the rectifier and whose backward follows a rule read at
backward time (so one recorded forward can be differentiated under several rules):

- plain:  g * [0 < x < hi]                       (autograd's own gradient)
- guided: max(g, 0) * [0 < x < hi]               (Springenberg et al. 2015)
- deconv: max(g, 0) * [x < hi]                   (Zeiler & Fergus 2014)

``hi`` is +inf for ReLU and 6 for ReLU6. ReLU6 is read as a rectifier followed by a saturation
at 6: the rectifier part takes the method's rule, the saturation keeps its ordinary gradient gate
(deconvnet ignores the forward switch of the rectifier, not the slope of the clip). The x == 0
convention is autograd's: no gradient at exactly 0.

Interception is a ``TorchFunctionMode`` (thread-local, entered only for the forward pass), so it
catches ``nn.ReLU`` / ``nn.ReLU6`` / ``nn.Hardtanh(0, hi)`` modules (whose forwards call
``F.relu`` / ``F.hardtanh``), modules reused several times, and functional ``F.relu``,
``torch.relu``, ``Tensor.relu``, their in-place forms, ``F.relu6`` and ``F.hardtanh``.
In-place calls stay in place (the input is rectified and returned, as autograd's own in-place
forms do), so model code that ignores the return value of ``x.relu_()`` keeps working. No module
is swapped and no hook is left behind.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

Rule = Literal["plain", "guided", "deconv"]
RULES = ("plain", "guided", "deconv")

# Activations that are not rectifiers: guided backprop / deconvnet have no rule for them, so their
# gradient passes unchanged. We say so instead of silently returning something near the gradient.
UNHANDLED_MODULES = (nn.SiLU, nn.GELU, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
                     nn.Hardswish, nn.Mish, nn.Softplus)
UNHANDLED_FUNCTIONS = {F.silu, F.gelu, F.leaky_relu, F.leaky_relu_, F.prelu, F.rrelu, F.elu, F.selu, F.celu,
                       F.hardswish, F.mish, F.softplus, torch.selu, torch.celu, torch.prelu, torch.rrelu}


@dataclass
class RuleState:
    """The rule every recorded rectifier applies on the next backward pass; ``calls`` counts the
    rectifier calls seen during the forward."""

    rule: Rule = "plain"
    calls: int = 0
    unhandled: set[str] = field(default_factory=set)


class _Rectify(torch.autograd.Function):
    """clamp(x, 0, hi), in place when asked, whose backward follows ``state.rule``.

    The gate 0 < x < hi equals 0 < y < hi on the output y, so the backward reads whichever
    tensor native autograd saves for the same call (the output of ReLU and of every in-place form,
    the input of out-of-place hardtanh / ReLU6): a model that works under autograd works here, and
    an in-place call needs no copy of its input. Each rule is one fused aten gate
    (threshold_backward / hardtanh_backward) into a new tensor, rectified in place for guided and
    deconv (max(g * gate, 0) == max(g, 0) * gate): one new tensor per call and rule.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, hi: float, state: RuleState, inplace: bool) -> torch.Tensor:
        ctx.state, ctx.hi = state, hi
        bounded = math.isfinite(hi)
        if inplace:
            y = x.clamp_(0, hi) if bounded else x.clamp_min_(0)
            ctx.mark_dirty(x)
        else:
            y = x.clamp(0, hi) if bounded else x.clamp_min(0)
        ctx.save_for_backward(x if bounded and not inplace else y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (saved,) = ctx.saved_tensors
        rule, hi = ctx.state.rule, ctx.hi
        if rule == "deconv":  # max(g, 0) * [x < hi]
            if not math.isfinite(hi):
                return grad.clamp_min(0), None, None, None
            return torch.ops.aten.hardtanh_backward(grad, saved, -math.inf, hi).clamp_min_(0), None, None, None
        if math.isfinite(hi):
            gated = torch.ops.aten.hardtanh_backward(grad, saved, 0.0, hi)  # g * [0 < x < hi]
        else:
            gated = torch.ops.aten.threshold_backward(grad, saved, 0.0)  # g * [x > 0]
        # gated is our own new tensor (the incoming grad may be shared), so rectify it in place
        return (gated.clamp_min_(0) if rule == "guided" else gated), None, None, None


def _arg(args, kwargs, position: int, name: str, default):
    if len(args) > position:
        return args[position]
    return kwargs.get(name, default)


# func -> (in place?, upper bound or None when read from the hardtanh arguments)
_RELU_LIKE = {
    F.relu: (None, math.inf), torch.relu: (False, math.inf), torch.Tensor.relu: (False, math.inf),
    torch.relu_: (True, math.inf), torch.Tensor.relu_: (True, math.inf), F.relu_: (True, math.inf),
    F.relu6: (None, 6.0), F.hardtanh: (None, None), F.hardtanh_: (True, None),
}


class _RectifierMode(TorchFunctionMode):
    def __init__(self, state: RuleState):
        super().__init__()
        self.state = state

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_LIKE:
            inplace, hi = _RELU_LIKE[func]
            x = args[0] if args else kwargs["input"]
            if inplace is None:
                inplace = bool(_arg(args, kwargs, 3 if hi is None else 1, "inplace", False))
            if hi is None:  # hardtanh: a rectifier only when its floor is 0
                lo, hi = float(_arg(args, kwargs, 1, "min_val", -1.0)), float(_arg(args, kwargs, 2, "max_val", 1.0))
                if lo != 0.0 or hi <= 0.0:
                    return func(*args, **kwargs)
            if not x.requires_grad:
                return func(*args, **kwargs)
            self.state.calls += 1
            return _Rectify.apply(x, hi, self.state, inplace)
        if func in UNHANDLED_FUNCTIONS:
            self.state.unhandled.add(f"{func.__module__}.{func.__name__}")
        return func(*args, **kwargs)


def unhandled_rectifier_modules(model: nn.Module) -> list[str]:
    """Dotted names of activation modules guided backprop and deconvnet have no rule for."""
    return [name for name, m in model.named_modules() if isinstance(m, UNHANDLED_MODULES)]


@contextlib.contextmanager
def rectifier_rules(model: nn.Module, method: str) -> Iterator[RuleState]:
    """Record rectifiers with switchable backward rules during the forward passes in the block.

    Set ``state.rule`` before each backward. Warns (naming modules or functions) when the model
    has activations no rule exists for, or when no rectifier was seen at all, since the map would
    then be the plain gradient.
    """
    state = RuleState()
    modules = unhandled_rectifier_modules(model)
    if modules:
        shown = ", ".join(f"{n} ({type(model.get_submodule(n)).__name__})" for n in modules[:5])
        more = f" and {len(modules) - 5} more" if len(modules) > 5 else ""
        warnings.warn(f"{method}: no rectifier rule for {shown}{more}; their gradient passes unchanged",
                      stacklevel=3)
    with _RectifierMode(state):
        yield state
    if state.unhandled and not modules:
        warnings.warn(f"{method}: no rectifier rule for functional {', '.join(sorted(state.unhandled))}; "
                      "their gradient passes unchanged", stacklevel=3)
    if state.calls == 0:
        warnings.warn(f"{method}: the model made no ReLU/ReLU6 call, so the map is the plain gradient", stacklevel=3)
