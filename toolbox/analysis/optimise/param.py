"""Image parameterisations: what the optimiser changes, and how it becomes an RGB image.

All produce (N, 3, H, W) float32 RGB in [0, 1] from the tensors a step rule updates
(``parameters()``); ``image()`` builds the picture (with its autograd graph where there is one):

- ``Pixels``: the image itself (DeepDream, inversion, style transfer).

For unit pictures one seeded generator per batch element makes each element's start independent
of the batch it is computed in:
- ``PixelImage``: the pixels themselves, stored centred on mid-grey (value 0 = grey 0.5), so
  that the Yosinski et al. regularisers (decay towards 0, clipping to 0) mean "towards grey".
- ``FourierImage``: the Lucid parameterisation. A real-FFT spectrum scaled by 1/f^decay (so
  all frequencies learn at a similar rate), optionally in a decorrelated colour space, squashed
  into [0, 1] with a sigmoid.
"""
from __future__ import annotations

import torch

# Lucid's square root of the ImageNet colour correlation matrix (columns: decorrelated -> RGB).
COLOR_CORRELATION_SVD_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                           [0.27, 0.00, -0.05],
                                           [0.27, -0.09, 0.03]])
_MAX_NORM = COLOR_CORRELATION_SVD_SQRT.norm(dim=0).max()
COLOR_CORRELATION_NORMALISED = COLOR_CORRELATION_SVD_SQRT / _MAX_NORM


def decorrelate_colour(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in the decorrelated colour basis -> (N, 3, H, W) in RGB (before the sigmoid)."""
    matrix = COLOR_CORRELATION_NORMALISED.to(x.device, x.dtype)
    return torch.einsum("nchw,rc->nrhw", x, matrix)


def rfft2d_frequencies(h: int, w: int) -> torch.Tensor:
    """(h, w // 2 + 1) radial spatial frequency (cycles per pixel) of each rfft2 coefficient."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return (fx * fx + fy * fy).sqrt()


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> torch.Tensor:
    """(h, w // 2 + 1) amplitude scale 1 / max(f, 1/max(h, w))^decay_power (Lucid's 1/f decay)."""
    freqs = rfft2d_frequencies(h, w)
    return 1.0 / freqs.clamp(min=1.0 / max(h, w)) ** decay_power


class PixelImage:
    """Pixels centred on grey: ``rgb = 0.5 + centred``, centred in [-0.5, 0.5].

    ``centred`` (N, 3, H, W) is the learnable tensor (also what the regularisers edit in place).
    """

    def __init__(self, generators: list[torch.Generator], size: int, device: torch.device | str = "cpu",
                 init_std: float = 0.05):
        noise = torch.stack([torch.randn(3, size, size, generator=g) for g in generators]) * init_std
        self.centred = noise.clamp(-0.5, 0.5).to(device).requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.centred]

    def image(self) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1]."""
        return self.centred + 0.5


class FourierImage:
    """Lucid's ``fft_image`` + ``to_valid_rgb``: spectrum (N, 3, H, W//2+1, 2) -> sigmoid(colour(irfft))."""

    MAGIC = 4.0  # Lucid divides the spatial image by 4 so sigmoid inputs start small

    def __init__(self, generators: list[torch.Generator], size: int, device: torch.device | str = "cpu",
                 decay_power: float = 1.0, decorrelate: bool = True, init_std: float = 0.01):
        self.size = size
        self.decorrelate = decorrelate
        shape = (3, size, size // 2 + 1, 2)
        spectrum = torch.stack([torch.randn(shape, generator=g) for g in generators]) * init_std
        self.spectrum = spectrum.to(device).requires_grad_(True)
        self.scale = spectrum_scale(size, size, decay_power).to(device)[None, None, :, :, None]

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def image(self) -> torch.Tensor:
        """(N, 3, H, W) RGB in (0, 1)."""
        spectrum = torch.view_as_complex(self.scale * self.spectrum)
        x = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / self.MAGIC
        if self.decorrelate:
            x = decorrelate_colour(x)
        return torch.sigmoid(x)



class Pixels:
    """One image's pixels as they are: ``rgb`` (N, 3, H, W) float32 RGB in [0, 1], updated in place.

    The parameterisation of DeepDream, inversion and style transfer (their images start from a
    photo or from noise and are clipped to [0, 1] by the step rule).
    """

    def __init__(self, rgb: torch.Tensor):
        self.rgb = rgb

    def parameters(self) -> list[torch.Tensor]:
        return [self.rgb]

    def image(self) -> torch.Tensor:
        return self.rgb
