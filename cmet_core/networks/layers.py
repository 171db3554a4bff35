"""StyleGAN2-style building blocks used by the EDTalk generator (SPEC.md §2).

Parameter names and shapes follow the published checkpoint so that `EDTalk.pt` loads strictly;
operation order follows the spec so results agree with the original to float32 rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def fir_kernel(scale: float = 1.0) -> torch.Tensor:
    """The [1,3,3,1] separable FIR kernel, normalised to sum 1, times `scale`."""
    h = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = h[None, :] * h[:, None]
    return k / k.sum() * scale


def upfirdn(x: torch.Tensor, kernel: torch.Tensor, up: int, pad: tuple[int, int]) -> torch.Tensor:
    """Zero-insertion upsampling, zero padding and a per-channel 2-D FIR filter (SPEC §2.2).

    Filtering runs as one single-channel convolution over the (B*C) planes, the layout the
    original uses, which keeps rounding identical.
    """
    b, c, h, w = x.shape
    out = x.reshape(b * c, 1, h, w)
    if up > 1:
        out = out.reshape(b * c, 1, h, 1, w, 1)
        out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
        out = out.reshape(b * c, 1, h * up, w * up)
    out = F.pad(out, [pad[0], pad[1], pad[0], pad[1]])
    weight = torch.flip(kernel, [0, 1]).reshape(1, 1, *kernel.shape).to(out.dtype)
    out = F.conv2d(out, weight)
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


class Blur(nn.Module):
    """FIR blur without resampling; `kernel` is a persistent buffer because the checkpoint has it."""

    kernel: torch.Tensor

    def __init__(self, pad: tuple[int, int], scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", fir_kernel(scale))
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn(x, self.kernel, 1, self.pad)


class Upsample(nn.Module):
    """2x upsampling through the FIR kernel (x4 to keep the mean), used on ToRGB/ToFlow skips."""

    kernel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", fir_kernel(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn(x, self.kernel, 2, (2, 1))


class EqualConv2d(nn.Module):
    """Equalised-learning-rate convolution: unit-variance weights scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
        self.scale = 1.0 / math.sqrt(cin * k * k)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear layer (no activation anywhere in EDTalk)."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale = 1.0 / math.sqrt(cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, bias=self.bias)


class FusedLeakyReLU(nn.Module):
    """sqrt(2) * leaky_relu_0.2(x + bias) with a (1,C,1,1) bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.bias, 0.2) * SQRT2


class ConvLayer(nn.Sequential):
    """EqConv with optional blur-before-stride-2 and FusedLeakyReLU; indices match checkpoint keys."""

    def __init__(self, cin: int, cout: int, k: int, downsample: bool = False, activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = 2 + (k - 1)
            layers.append(Blur(((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, k // 2
        layers.append(EqualConv2d(cin, cout, k, stride=stride, padding=padding, bias=False))
        if activate:
            layers.append(FusedLeakyReLU(cout))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Downsampling residual block of the appearance encoder; output is halved in size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(cin, cin, 3)
        self.conv2 = ConvLayer(cin, cout, 3, downsample=True)
        self.skip = ConvLayer(cin, cout, 1, downsample=True, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv2(self.conv1(x))
        skip: torch.Tensor = self.skip(x)
        return (out + skip) / SQRT2


class ModulatedConv2d(nn.Module):
    """Per-sample modulated (and optionally demodulated) convolution, applied as a grouped conv."""

    def __init__(
        self, cin: int, cout: int, k: int, style_dim: int, demodulate: bool = True, upsample: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        if upsample:
            self.blur = Blur((1, 1), scale=4.0)
        self.scale = 1.0 / math.sqrt(cin * k * k)
        self.cin, self.cout, self.k = cin, cout, k
        self.demodulate = demodulate
        self.upsample = upsample

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch = style.shape[0]
        if x.shape[0] != batch:
            x = x.expand(batch, -1, -1, -1)
        h, w = x.shape[-2:]
        s = self.modulation(style).view(batch, 1, self.cin, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.cout, 1, 1, 1)
        x = x.reshape(1, batch * self.cin, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * self.cin, self.cout, self.k, self.k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = out.reshape(batch, self.cout, out.shape[-2], out.shape[-1])
            blurred: torch.Tensor = self.blur(out)
            return blurred
        weight = weight.reshape(batch * self.cout, self.cin, self.k, self.k)
        out = F.conv2d(x, weight, padding=self.k // 2, groups=batch)
        return out.reshape(batch, self.cout, h, w)


class NoiseInjection(nn.Module):
    """`x + weight * noise`; without a noise map it is the identity (EDTalk's synthesis passes none,
    PD-FGC's passes its fixed maps)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return x if noise is None else x + self.weight * noise


class StyledConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, k, style_dim, demodulate=True, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.activate(self.noise(self.conv(x, style), noise))
        return out
