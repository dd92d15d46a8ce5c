"""Device policy of an optimisation: precision, input layout and what counts as out-of-memory.

On CUDA the forward runs under bf16 autocast while the image being optimised (the "master") and
its update stay fp32; activations are cast back to fp32 before an objective reads them. On CPU
everything is fp32. The model input is the RGB image through the model's normalisation, which is
affine per channel, so it is applied outside autograd and its gradient is one multiply.
"""
from __future__ import annotations

import torch

from toolbox.models.registry import LoadedModel

OOM_ERRORS = tuple({getattr(torch, "OutOfMemoryError", RuntimeError), torch.cuda.OutOfMemoryError})


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


class InputMap:
    """model input = gain * rgb + shift, per channel (the model's Preprocess.normalise as one affine map).

    ``input(rgb)`` -> (N, 3, H, W) model input that requires grad (channels_last if asked);
    ``rgb_gradient(g)`` -> d objective / d rgb from d objective / d input.
    """

    def __init__(self, model: LoadedModel, channels_last: bool = True):
        device = model.device
        zero, one = (model.preprocess.normalise(torch.full((1, 3, 1, 1), v, device=device)) for v in (0.0, 1.0))
        self.shift, self.gain = zero, one - zero
        self.channels_last = channels_last

    def input(self, rgb: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            inp = torch.addcmul(self.shift, rgb, self.gain)
            if self.channels_last:
                inp = inp.contiguous(memory_format=torch.channels_last)
        return inp.requires_grad_(True)

    def rgb_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.mul(grad, self.gain, out=torch.empty(grad.shape, dtype=grad.dtype, device=grad.device))
