"""EDTalk's Audio2Lip (conformance kit `audio2lip/SPEC_audio2lip.md`): mel windows -> 20 lip coefficients per frame.

Thirteen conv blocks (conv, eval-mode BatchNorm, optional residual added after BatchNorm and
before the ReLU, ReLU on every block) reduce one (1, 80, 16) mel window to a 512-d feature, and a
linear map gives the lip alphas the generator takes as `alpha_lip`. Key names follow the
checkpoint `Audio2Lip.pt['audio2lip']`, so it loads strictly. `smooth_lips` is the original's
temporal smoothing (`conv_feat`): zero-padded, so the first and last frames shrink.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MEL_BANDS = 80
WINDOW_FRAMES = 16


@dataclass(frozen=True)
class Audio2LipConfig:
    """Defaults are the published network; `widths` are the channels of its five stages."""

    widths: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)
    lip_dim: int = 20

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Audio2LipConfig:
        """The inverse of `to_dict` after a JSON round trip (which turns `widths` into a list)."""
        fields = dict(values)
        if "widths" in fields:
            fields["widths"] = tuple(fields["widths"])
        return cls(**fields)


# Same topology and input size as the published one, a few thousand parameters: tests build it in milliseconds.
TINY_AUDIO2LIP = Audio2LipConfig(widths=(4, 8, 8, 8, 16))


def _layers(widths: tuple[int, int, int, int, int]) -> list[tuple[int, int, int, tuple[int, int], int, bool]]:
    """(cin, cout, kernel, stride, padding, residual) of the 13 blocks (SPEC §3)."""
    c1, c2, c3, c4, c5 = widths
    return [
        (1, c1, 3, (1, 1), 1, False),
        (c1, c1, 3, (1, 1), 1, True),
        (c1, c1, 3, (1, 1), 1, True),
        (c1, c2, 3, (3, 1), 1, False),
        (c2, c2, 3, (1, 1), 1, True),
        (c2, c2, 3, (1, 1), 1, True),
        (c2, c3, 3, (3, 3), 1, False),
        (c3, c3, 3, (1, 1), 1, True),
        (c3, c3, 3, (1, 1), 1, True),
        (c3, c4, 3, (3, 2), 1, False),
        (c4, c4, 3, (1, 1), 1, True),
        (c4, c5, 3, (1, 1), 0, False),
        (c5, c5, 1, (1, 1), 0, False),
    ]


class ConvBlock(nn.Module):
    """conv -> BatchNorm (running statistics in eval mode) [+ block input] -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: tuple[int, int], padding: int, residual: bool) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout, eps=1e-5))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv_block(x)
        if self.residual:
            z = z + x
        return F.relu(z)


class Audio2Lip(nn.Module):
    """(N, 1, 80, 16) mel windows -> (N, lip_dim); `forward(windows, bs, T)` gives the original's (bs, T, lip_dim)."""

    def __init__(self, config: Audio2LipConfig | None = None) -> None:
        super().__init__()
        self.config = config or Audio2LipConfig()
        self.audio_encoder = nn.Sequential(*(ConvBlock(*spec) for spec in _layers(self.config.widths)))
        self.mapping = nn.Linear(self.config.widths[-1], self.config.lip_dim)

    def features(self, windows: torch.Tensor, trace: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The (N, widths[-1]) feature fed to `mapping`; `trace` collects every block's output."""
        x = windows
        for block in self.audio_encoder:
            x = block(x)
            if trace is not None:
                trace.append(x)
        return x.flatten(1)

    def forward(self, windows: torch.Tensor, bs: int = 1, frames: int | None = None) -> torch.Tensor:
        out: torch.Tensor = self.mapping(self.features(windows))
        return out.reshape(bs, frames if frames is not None else out.shape[0] // bs, -1)


def smoothing_kernel(size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian taps normalised in float64, then cast to float32 (the original's `conv_feat` kernel)."""
    half = size // 2
    taps = [math.exp(-(x * x) / (2.0 * sigma * sigma)) for x in range(-half, half + 1)]
    total = math.fsum(taps)
    return torch.tensor([t / total for t in taps], dtype=torch.float64).float()


def smooth_lips(lips: torch.Tensor, size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """(T, D) -> (T, D): each coefficient smoothed along time, zero-padded with no renormalisation at the edges."""
    kernel = smoothing_kernel(size, sigma).to(lips.device, lips.dtype)
    dim = lips.shape[1]
    x = lips.t().unsqueeze(0)  # (1, D, T)
    weight = kernel.view(1, 1, -1).expand(dim, 1, -1).contiguous()
    return F.conv1d(x, weight, padding=size // 2, groups=dim)[0].t().contiguous()
