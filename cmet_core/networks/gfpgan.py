"""GFPGAN v1.4 face restorer (the "clean" architecture), written from the kit's SPEC_gfpgan.md.

A degradation-removal U-Net encodes the face into 16 latents and spatial SFT conditions that
steer half of a StyleGAN2 decoder's channels at every resolution. Key names and shapes follow
the published checkpoint (`GFPGANv1.4.pth`, entry `params_ema`) so it loads strictly. The decoder
reads its stored noise maps by default (fixed noise): identical faces give identical outputs and
consecutive video frames do not flicker.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class GFPGANConfig:
    """Sizes; the default is the published v1.4 network (512 px, 512-d latents, channel multiplier 2)."""

    out_size: int = 512
    style_dim: int = 512
    channel_multiplier: int = 2
    narrow: float = 1.0
    num_mlp: int = 8

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def num_latent(self) -> int:
        return 2 * self.log_size - 2

    @property
    def num_noises(self) -> int:
        return 2 * self.log_size - 3

    def _width(self, res: int, narrow: float) -> int:
        base = 512.0 if res <= 32 else 256.0 * self.channel_multiplier * 64 / res
        return int(base * narrow)

    def decoder_channels(self, res: int) -> int:
        return self._width(res, self.narrow)

    def unet_channels(self, res: int) -> int:
        """Half the decoder's width, so the SFT conditions cover exactly half of its channels."""
        return self._width(res, self.narrow * 0.5)


TINY_GFPGAN = GFPGANConfig(out_size=32, style_dim=16, narrow=1 / 32, num_mlp=2)
"""A restorer of 32x32 faces with a few channels per level: tests and development (about 0.1 MB)."""

LICENCE = (
    "code Apache-2.0 with third-party notices (among them NVIDIA's non-commercial StyleGAN2 licence: "
    "review before commercial use); the published weights carry no stated licence"
)
"""What the GFPGAN repository says about GFPGANv1.4.pth, shown by `cmet models list` (conformance kit README)."""


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class ResBlock(nn.Module):
    """conv3x3, lrelu, bilinear x f, conv3x3, lrelu; plus a bilinear x f + bias-free 1x1 skip."""

    def __init__(self, c_in: int, c_out: int, factor: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv1(x), 0.2)
        out = F.leaky_relu(self.conv2(_resize(out, self.factor)), 0.2)
        skip: torch.Tensor = self.skip(_resize(x, self.factor))
        return out + skip


class ModulatedConv2d(nn.Module):
    """Per-sample weights scaled by a style; optional demodulation and bilinear x2 before the conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int, style_dim: int, demodulate: bool, upsample: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, c_out, c_in, kernel, kernel) / math.sqrt(c_in * kernel * kernel))
        self.modulation = nn.Linear(style_dim, c_in)
        self.demodulate, self.upsample = demodulate, upsample
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.shape
        weight = self.weight * self.modulation(w).view(b, 1, c, 1, 1)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(b, -1, 1, 1, 1)
        c_out, k = weight.shape[1], weight.shape[-1]
        if self.upsample:
            x = _resize(x, 2.0)
        h, wd = x.shape[-2:]
        out = F.conv2d(x.reshape(1, b * c, h, wd), weight.reshape(b * c_out, c, k, k), padding=self.padding, groups=b)
        return out.view(b, c_out, *out.shape[-2:])


class StyleConv(nn.Module):
    """Demodulated 3x3 modulated conv times sqrt(2), plus scaled one-channel noise, bias and lrelu."""

    def __init__(self, c_in: int, c_out: int, style_dim: int, upsample: bool) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(c_in, c_out, 3, style_dim, demodulate=True, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        out = self.modulated_conv(x, w) * SQRT2
        if noise is None:
            b, _, h, wd = out.shape
            noise = out.new_empty(b, 1, h, wd).normal_()
        out = out + self.weight * noise
        return F.leaky_relu(out + self.bias, 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation, plus bias, plus the bilinear x2 previous skip."""

    def __init__(self, c_in: int, style_dim: int) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(c_in, 3, 1, style_dim, demodulate=False, upsample=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = self.modulated_conv(x, w) + self.bias
        return out if skip is None else out + _resize(skip, 2.0)


class Noises(nn.Module):
    """Holds the persistent noise maps `noise0..noiseK` (one channel, at each StyleConv's resolution)."""

    def __init__(self, cfg: GFPGANConfig) -> None:
        super().__init__()
        for k in range(cfg.num_noises):
            r = 2 ** ((k + 5) // 2)
            self.register_buffer(f"noise{k}", torch.randn(1, 1, r, r))

    def maps(self) -> list[torch.Tensor]:
        return [b for _, b in sorted(self.named_buffers(), key=lambda kv: int(kv[0][5:]))]


class ConstantInput(nn.Module):
    """The learned 4x4 start map of the decoder, repeated over the batch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, 4, 4))


class StyleDecoder(nn.Module):
    """StyleGAN2 decoder whose second channel half is modulated by the U-Net's SFT conditions."""

    def __init__(self, cfg: GFPGANConfig) -> None:
        super().__init__()
        sd = cfg.style_dim
        mlp: list[nn.Module] = [nn.Identity()]  # the unused mapping network, kept for the checkpoint's keys
        for _ in range(cfg.num_mlp):
            mlp += [nn.Linear(sd, sd), nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*mlp)
        c4 = cfg.decoder_channels(4)
        self.constant_input = ConstantInput(c4)
        self.style_conv1 = StyleConv(c4, c4, sd, upsample=False)
        self.to_rgb1 = ToRGB(c4, sd)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        c_prev = c4
        for level in range(3, cfg.log_size + 1):
            c = cfg.decoder_channels(2**level)
            self.style_convs.append(StyleConv(c_prev, c, sd, upsample=True))
            self.style_convs.append(StyleConv(c, c, sd, upsample=False))
            self.to_rgbs.append(ToRGB(c, sd))
            c_prev = c
        self.noises = Noises(cfg)

    def forward(
        self,
        latents: torch.Tensor,
        conditions: list[tuple[torch.Tensor, torch.Tensor]],
        fixed_noise: bool = True,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        count = len(self.style_convs) + 1
        noise: list[torch.Tensor | None] = list(self.noises.maps()) if fixed_noise else [None] * count
        b = latents.shape[0]
        x = self.style_conv1(self.constant_input.weight.repeat(b, 1, 1, 1), latents[:, 0], noise[0])
        _trace(trace, "dec_conv0", x)
        skip: torch.Tensor = self.to_rgb1(x, latents[:, 1], None)
        _trace(trace, "dec_rgbskip0", skip, full=True)
        for lv, to_rgb in enumerate(self.to_rgbs, start=1):
            j = 2 * lv - 1
            x = self.style_convs[j - 1](x, latents[:, j], noise[j])
            _trace(trace, f"dec_conv{j}", x)
            scale, shift = conditions[lv - 1]
            same, sft = torch.split(x, x.shape[1] // 2, dim=1)
            x = torch.cat([same, sft * scale + shift], dim=1)
            x = self.style_convs[j](x, latents[:, j + 1], noise[j + 1])
            _trace(trace, f"dec_conv{j + 1}", x)
            skip = to_rgb(x, latents[:, j + 2], skip)
            _trace(trace, f"dec_rgbskip{lv}", skip, full=lv <= 4)  # the kit keeps 4..64 px in full
        return skip


def _trace(trace: dict[str, torch.Tensor] | None, name: str, t: torch.Tensor, full: bool = False) -> None:
    """Record the per-channel spatial mean of batch row 0 (float64), and the map itself if asked."""
    if trace is None:
        return
    trace[f"{name}_chmean"] = t[0].double().mean(dim=(1, 2))
    if full:
        trace[f"{name}_full"] = t[0]


def _sft_branch(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(c, c, 3, 1, 1))


class GFPGAN(nn.Module):
    """GFPGANv1Clean: (B,3,S,S) RGB in [-1,1] -> (B,3,S,S) RGB, unclamped (SPEC_gfpgan.md section 4)."""

    def __init__(self, cfg: GFPGANConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or GFPGANConfig()
        log = cfg.log_size
        cu = cfg.unet_channels
        self.conv_body_first = nn.Conv2d(3, cu(cfg.out_size), 1)
        self.conv_body_down = nn.ModuleList(ResBlock(cu(2**lv), cu(2 ** (lv - 1)), 0.5) for lv in range(log, 2, -1))
        self.final_conv = nn.Conv2d(cu(4), cu(4), 3, 1, 1)
        self.conv_body_up = nn.ModuleList(ResBlock(cu(2 ** (lv - 1)), cu(2**lv), 2.0) for lv in range(3, log + 1))
        self.toRGB = nn.ModuleList(nn.Conv2d(cu(2**lv), 3, 1) for lv in range(3, log + 1))
        self.final_linear = nn.Linear(cu(4) * 16, cfg.num_latent * cfg.style_dim)
        self.stylegan_decoder = StyleDecoder(cfg)
        self.condition_scale = nn.ModuleList(_sft_branch(cu(2**lv)) for lv in range(3, log + 1))
        self.condition_shift = nn.ModuleList(_sft_branch(cu(2**lv)) for lv in range(3, log + 1))

    def forward(
        self, x: torch.Tensor, fixed_noise: bool = True, trace: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """`fixed_noise=False` draws fresh noise per call, as the original's default does (not reproducible)."""
        feat = F.leaky_relu(self.conv_body_first(x), 0.2)
        _trace(trace, "enc_first", feat)
        skips: list[torch.Tensor] = []
        for i, block in enumerate(self.conv_body_down):
            feat = block(feat)
            skips.append(feat)
            _trace(trace, f"enc_down{i}", feat)
        feat = F.leaky_relu(self.final_conv(feat), 0.2)
        latents = self.final_linear(feat.reshape(feat.shape[0], -1)).view(feat.shape[0], -1, self.cfg.style_dim)
        if trace is not None:
            trace["enc_final_feat"] = feat[0]
            trace["style_code"] = latents[0]
        conditions: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, block in enumerate(self.conv_body_up):
            feat = block(feat + skips[-1 - i])
            _trace(trace, f"unet_up{i}", feat)
            scale, shift = self.condition_scale[i](feat), self.condition_shift[i](feat)
            _trace(trace, f"sft_scale{i}", scale)
            _trace(trace, f"sft_shift{i}", shift)
            conditions.append((scale, shift))
        out: torch.Tensor = self.stylegan_decoder(latents, conditions, fixed_noise=fixed_noise, trace=trace)
        if trace is not None:
            trace["net_output"] = out[0]
        return out


def face_to_tensor(face: np.ndarray, bgr: bool = True) -> torch.Tensor:
    """uint8 (S,S,3) face -> (1,3,S,S) float32 RGB in [-1,1], bit-identical to the original (SPEC section 2)."""
    if face.dtype != np.uint8 or face.ndim != 3 or face.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H,W,3) face, got {face.dtype} {face.shape}")
    v = (face / 255.0).astype(np.float32)
    if bgr:
        v = v[..., ::-1]
    t = torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1)))
    return ((t - 0.5) / 0.5)[None].contiguous()


def tensor_to_face(y: torch.Tensor, bgr: bool = True) -> np.ndarray:
    """(3,S,S) or (1,3,S,S) raw output -> uint8 (S,S,3): clamp, (y+1)/2, *255, round half to even.

    The clamp works on a copy: the caller's raw output stays unclamped.
    """
    t = y.reshape(y.shape[-3:]).detach().float().cpu().clamp(-1.0, 1.0)
    img = ((t - (-1.0)) / (1.0 - (-1.0))).numpy().transpose(1, 2, 0)
    if bgr:
        img = img[..., ::-1]
    return np.round(img * np.float32(255.0)).astype(np.uint8)


@torch.no_grad()
def restore_face(
    net: GFPGAN,
    face: np.ndarray,
    bgr: bool = True,
    fixed_noise: bool = True,
    trace: dict[str, torch.Tensor] | None = None,
) -> np.ndarray:
    """Restore one aligned face of the network's size (uint8 BGR or RGB in, the same order out).

    `trace` receives the internals per level and the raw output (`net_output`), for conformance.
    """
    size = net.cfg.out_size
    if face.shape[:2] != (size, size):
        raise ValueError(f"expected an aligned {size}x{size} face, got {face.shape[1]}x{face.shape[0]}")
    param = next(net.parameters())
    x = face_to_tensor(face, bgr=bgr).to(param.device, param.dtype)
    return tensor_to_face(net(x, fixed_noise=fixed_noise, trace=trace), bgr=bgr)
