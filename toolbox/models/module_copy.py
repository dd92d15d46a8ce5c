"""Deep copies of a model without the hooks registered on it."""
from __future__ import annotations

import copy

from torch import nn

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


def copy_without_hooks(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose modules have no forward or backward hooks. The hooks are left
    out of the copy rather than copied and cleared, so whatever they refer to (a window's plugin,
    its locks, captured activations) is never copied; ``model`` itself is not touched, so other
    threads may keep running it."""
    memo: dict[int, object] = {}
    for module in model.modules():
        for name in HOOK_DICTS:
            hooks = getattr(module, name, None)
            if hooks is not None:
                memo[id(hooks)] = type(hooks)()
    return copy.deepcopy(model, memo)
