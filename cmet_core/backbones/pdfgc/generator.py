"""PD-FGC's image generator, `net_generator` (kit SPEC_pdfgc.md sections 5.4 and 6): a StyleGAN2
synthesis network at 224 px in rosinality's key layout, built from the shared layers of
`cmet_core.networks.layers`.

Every layer takes the same style vector `[id_feat 2048, mouth 500, emotion 30, eye 6, pose 6]`
(2590) and the identity map replaces the constant input. Noise: the original ignores its saved
`noises.noise_*` buffers and draws one map per layer on its first call; here those maps are state
drawn once at construction from `noise_seed` exactly as the original draws them on CPU after its
`torch.manual_seed(20202001)` (kit trap T9), so renders are reproducible and the same for every
batch row. What the checkpoint holds and no render reads (the style MLP, the constant input, the
saved noise buffers) is kept so the published file loads strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cmet_core.networks.layers import EqualLinear, ModulatedConv2d, StyledConv, Upsample

NEVER_RUN = ("style.", "input.", "noises.")
"""Key prefixes that never shape a render: the mapping MLP, the constant input, the saved noise buffers."""

NOISE_SEED = 20202001
"""The seed of PD-FGC's Tester, after which its eleven noise maps are the first draws."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Defaults are the published network: 7 px identity map up to 224 px, channel multiplier 2."""

    channels: tuple[int, ...] = (512, 512, 512, 512, 256, 128)
    base_size: int = 7
    style_dim: int = 2590
    n_mlp: int = 8
    noise_seed: int = NOISE_SEED

    def noise_sizes(self) -> list[int]:
        """Map sizes of the StyledConvs in call order: `conv1`, then two per level."""
        return [self.base_size] + [self.base_size * 2**i for i in range(1, len(self.channels)) for _ in (0, 1)]


class ConstantInput(nn.Module):
    """StyleGAN2's learned start map (key `input.input`); the identity map takes its place."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class SavedNoises(nn.Module):
    """The checkpoint's `noises.noise_<k>` buffers: required by a strict load, never read (see `NoiseMaps`)."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        for k, r in enumerate(sizes):
            self.register_buffer(f"noise_{k}", torch.randn(1, 1, r, r))


class NoiseMaps(nn.Module):
    """The maps the noise layers add: drawn in layer order from a generator seeded with `seed`, as the
    original draws them lazily from the seeded global generator. Not saved: they follow from the seed."""

    def __init__(self, sizes: list[int], seed: int) -> None:
        super().__init__()
        gen = torch.Generator(device="cpu").manual_seed(seed)
        for k, r in enumerate(sizes):
            self.register_buffer(f"map_{k}", torch.empty(1, 1, r, r).normal_(generator=gen), persistent=False)
        self.count = len(sizes)

    def maps(self) -> list[torch.Tensor]:
        return [getattr(self, f"map_{k}") for k in range(self.count)]


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, plus bias, plus the previous skip upsampled by the FIR."""

    def __init__(self, cin: int, style_dim: int, upsample: bool) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ModulatedGenerator(nn.Module):
    """Style (B,2590) and identity map (B,512,7,7) -> image (B,3,224,224) in (-1,1)."""

    def __init__(self, cfg: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        ch, sd = cfg.channels, cfg.style_dim
        self.style = nn.Sequential(nn.Identity(), *(EqualLinear(sd, sd) for _ in range(cfg.n_mlp)))
        self.input = ConstantInput(ch[0], cfg.base_size)
        self.conv1 = StyledConv(ch[0], ch[0], 3, sd)
        self.to_rgb1 = ToRGB(ch[0], sd, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for cin, cout in zip(ch[:-1], ch[1:], strict=True):
            self.convs.append(StyledConv(cin, cout, 3, sd, upsample=True))
            self.convs.append(StyledConv(cout, cout, 3, sd))
            self.to_rgbs.append(ToRGB(cout, sd, upsample=True))
        self.noises = SavedNoises(cfg.noise_sizes())
        self.noise_maps = NoiseMaps(cfg.noise_sizes(), cfg.noise_seed)

    def forward(
        self, style: torch.Tensor, id_map: torch.Tensor, trace: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        noise = self.noise_maps.maps()
        layers: list[StyledConv] = [self.conv1, *self.convs]
        rgbs: list[ToRGB] = [self.to_rgb1, *self.to_rgbs]
        x = layers[0](id_map, style, noise[0])
        skip = rgbs[0](x, style)
        if trace is not None:
            self._trace(trace, style, layers, rgbs, 0, x, skip)
        for i in range(1, len(rgbs)):
            x = layers[2 * i - 1](x, style, noise[2 * i - 1])
            if trace is not None:
                trace[f"conv{2 * i - 1}"] = x
            x = layers[2 * i](x, style, noise[2 * i])
            skip = rgbs[i](x, style, skip)
            if trace is not None:
                self._trace(trace, style, layers, rgbs, i, x, skip)
        return torch.tanh(skip)

    @staticmethod
    def _trace(
        trace: dict[str, torch.Tensor],
        style: torch.Tensor,
        layers: list[StyledConv],
        rgbs: list[ToRGB],
        level: int,
        x: torch.Tensor,
        skip: torch.Tensor,
    ) -> None:
        """Level `level`'s last StyledConv output, its RGB skip, and the modulation vectors of its layers."""
        trace[f"conv{2 * level}"] = x
        trace[f"rgbskip{level}"] = skip
        trace[f"rgbmod{level}"] = rgbs[level].conv.modulation(style)
        for j in (0,) if level == 0 else (2 * level - 1, 2 * level):
            trace[f"mod{j}"] = layers[j].conv.modulation(style)
