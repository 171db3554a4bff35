"""EDTalk generator (SPEC.md §2-3): appearance encoder, motion heads, orthogonal bases, synthesis.

Two ways to render share the same modules:
* `render_reference` follows the published V render call for call (three encoder passes per
  frame, the discarded EEM branch computed, batch 1); it is the yardstick for the benchmark.
* `prepare_source` + `render` is the fast path: the identity source is encoded once per clip
  (including the expression-independent half of every EEM), driving frames are encoded once
  by the caller and reused for lip, pose and expression, and frames render in batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from cmet_core.networks.layers import (
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    ResBlock,
    StyledConv,
    Upsample,
)


@dataclass(frozen=True)
class EDTalkConfig:
    """Architecture hyper-parameters; the defaults are the published `Generator(256,512,20,6,10,1)`."""

    size: int = 256
    style_dim: int = 512
    lip_dim: int = 20
    pose_dim: int = 6
    exp_dim: int = 10
    channel_multiplier: int = 1
    channel_base: int = 16384
    max_channels: int = 512
    adain_hidden: int = 128

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"EDTalk size must be a power of two >= 8, got {self.size}")
        if self.style_dim < self.lip_dim + self.pose_dim + self.exp_dim:
            raise ValueError("EDTalk style_dim must be at least lip_dim + pose_dim + exp_dim (the QR basis needs it)")

    def channels(self, resolution: int) -> int:
        return min(self.max_channels, self.channel_base * self.channel_multiplier // resolution)

    @property
    def levels(self) -> int:
        """Decoder levels from 8 px up to `size`."""
        return int(math.log2(self.size)) - 2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


TINY_EDTALK = EDTalkConfig(size=32, style_dim=64, channel_base=256, max_channels=32, adain_hidden=16)


# ----------------------------------------------------------------------------------------------
# Encoder and motion heads


class EncoderApp(nn.Module):
    def __init__(self, cfg: EDTalkConfig) -> None:
        super().__init__()
        convs: list[nn.Module] = [ConvLayer(3, cfg.channels(cfg.size), 1)]
        cin = cfg.channels(cfg.size)
        r = cfg.size
        while r > 4:
            r //= 2
            cout = cfg.channels(r)
            convs.append(ResBlock(cin, cout))
            cin = cout
        convs.append(EqualConv2d(cin, cfg.style_dim, 4, padding=0, bias=False))
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor, with_feats: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the latent `wa` (B,style) and, finest last, the warp sources of the decoder levels."""
        res: list[torch.Tensor] = []
        for conv in self.convs:
            x = conv(x)
            res.append(x)
        wa = res[-1].squeeze(-1).squeeze(-1)
        feats = res[-3::-1] if with_feats else []
        return wa, feats


class Encoder(nn.Module):
    def __init__(self, cfg: EDTalkConfig) -> None:
        super().__init__()
        self.net_app = EncoderApp(cfg)


class Direction(nn.Module):
    def __init__(self, style_dim: int, dims: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(style_dim, dims))


def _mlp(style_dim: int, out_dim: int, depth: int) -> nn.Sequential:
    hidden = [EqualLinear(style_dim, style_dim) for _ in range(depth - 1)]
    return nn.Sequential(*hidden, EqualLinear(style_dim, out_dim))


@dataclass
class Motion:
    """Motion coefficients of a batch of frames, from one encoder pass each."""

    lip: torch.Tensor
    pose: torch.Tensor
    exp: torch.Tensor
    wa: torch.Tensor


# ----------------------------------------------------------------------------------------------
# Decoder parts


class ToRGB(nn.Module):
    """Not modulated (unlike StyleGAN2): 1x1 EqConv + FusedLeakyReLU + bias, plus the upsampled skip."""

    def __init__(self, cin: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ConvLayer(cin, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ToFlow(nn.Module):
    """Predicts a flow and a mask, warps the source features and blends them into the stream."""

    def __init__(self, cin: int, style_dim: int) -> None:
        super().__init__()
        self.upsample = Upsample()
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self._grids: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def base_grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Pixel-centre grid in the align_corners=True convention, sampled with align_corners=False.

        This mismatch is what the published weights were trained with, so a zero offset is not an
        identity warp; it must be reproduced, not fixed.
        """
        key = (h, w, device)
        grid = self._grids.get(key)
        if grid is None:
            ys = torch.linspace(-1.0, 1.0, h, dtype=torch.float64)
            xs = torch.linspace(-1.0, 1.0, w, dtype=torch.float64)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            grid = torch.stack([gx, gy], dim=-1).to(torch.float32).unsqueeze(0).to(device)
            self._grids[key] = grid
        return grid

    def forward(
        self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor, skip: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raw: torch.Tensor = self.conv(x, style) + self.bias
        if skip is not None:
            raw = raw + self.upsample(skip)
        h, w = raw.shape[-2:]
        offset = torch.tanh(raw[:, 0:2]).permute(0, 2, 3, 1)
        mask = torch.sigmoid(raw[:, 2:3])
        grid = (offset + self.base_grid(h, w, raw.device)).to(feat.dtype)
        if feat.shape[0] != grid.shape[0]:
            feat = feat.expand(grid.shape[0], -1, -1, -1)
        warped = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False) * mask
        return warped, warped + x * (1 - mask), raw


class ADAIN(nn.Module):
    def __init__(self, channels: int, style_dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Linear(style_dim, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def modulate(self, normed: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.mlp_shared(z)
        gamma = self.mlp_gamma(h)[:, :, None, None]
        beta = self.mlp_beta(h)[:, :, None, None]
        out: torch.Tensor = normed * (1 + gamma) + beta
        return out

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.modulate(F.instance_norm(x, eps=1e-5), z)


class EEM(nn.Module):
    """Expression embedding module: `ADAIN2(conv2(feat), e) + feat` (SPEC §2.9).

    `conv1`/`norm1` exist only because the checkpoint carries them; the original computes that
    branch and throws the result away.
    """

    def __init__(self, channels: int, style_dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm1 = ADAIN(channels, style_dim, hidden)
        self.norm2 = ADAIN(channels, style_dim, hidden)

    def source_part(self, feat: torch.Tensor) -> torch.Tensor:
        """The expression-independent half: instance-normalised conv2 of the source features."""
        return F.instance_norm(self.conv2(feat), eps=1e-5)

    def modulate(self, normed: torch.Tensor, feat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.norm2.modulate(normed, e) + feat

    def forward_original(self, feat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """The published call, discarded branch included, so the reference benchmark pays its cost."""
        F.leaky_relu(self.norm1(self.conv1(feat), e), 0.01)
        return self.modulate(self.source_part(feat), feat, e)


class ConstantInput(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class Synthesis(nn.Module):
    def __init__(self, cfg: EDTalkConfig) -> None:
        super().__init__()
        c4 = cfg.channels(4)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, cfg.style_dim)
        self.to_rgb1 = ToRGB(c4, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        self.fineadainresblock = nn.ModuleList()
        cin = c4
        for k in range(cfg.levels):
            cout = cfg.channels(8 * 2**k)
            self.convs.append(StyledConv(cin, cout, 3, cfg.style_dim, upsample=True))
            self.convs.append(StyledConv(cout, cout, 3, cfg.style_dim))
            self.to_flows.append(ToFlow(cout, cfg.style_dim))
            self.to_rgbs.append(ToRGB(cout))
            self.fineadainresblock.append(EEM(cout, cfg.style_dim, cfg.adain_hidden))
            cin = cout

    def eems(self) -> Iterable[EEM]:
        """The expression embedding modules, coarsest first (`fineadainresblock` holds only EEMs)."""
        return cast("Iterable[EEM]", self.fineadainresblock)

    def forward(
        self,
        latent: torch.Tensor,
        feats: list[torch.Tensor],
        e: torch.Tensor,
        normed: list[torch.Tensor] | None = None,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Render images from the latent, the source features and the expression latent `e`.

        With `normed` (from `EEM.source_part`, cached per source) the EEMs only modulate; without
        it every EEM runs the published call, discarded branch included.
        """
        x = self.conv1(self.input(latent.shape[0]), latent)
        rgb: torch.Tensor | None = None
        raw: torch.Tensor | None = None
        for k, eem in enumerate(self.eems()):
            x = self.convs[2 * k](x, latent)
            x = self.convs[2 * k + 1](x, latent)
            if normed is None:
                f = eem.forward_original(feats[k], e)
            else:
                f = eem.modulate(normed[k], feats[k], e)
            warped, x, raw = self.to_flows[k](x, latent, f, raw)
            rgb = self.to_rgbs[k](warped, rgb)
            if trace is not None:
                trace[f"flowraw_L{k}"] = raw
                trace[f"rgbskip_L{k}"] = rgb
                trace[f"warp_chmean_L{k}"] = warped.mean(dim=(2, 3))
                trace[f"eemfeat_chmean_L{k}"] = f.mean(dim=(2, 3))
        assert rgb is not None
        return rgb


# ----------------------------------------------------------------------------------------------
# Generator


@dataclass
class SourceCache:
    """Everything about the identity source that every rendered frame reuses."""

    wa: torch.Tensor
    feats: list[torch.Tensor]
    normed: list[torch.Tensor] = field(default_factory=list)


class Generator(nn.Module):
    def __init__(self, cfg: EDTalkConfig = EDTalkConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc = Encoder(cfg)
        self.dec = Synthesis(cfg)
        self.direction_lipnonlip = Direction(cfg.style_dim, cfg.lip_dim + cfg.pose_dim)
        self.direction_exp = Direction(cfg.style_dim, cfg.exp_dim)
        self.fc = _mlp(cfg.style_dim, cfg.style_dim, 4)
        self.lip_fc = _mlp(cfg.style_dim, cfg.lip_dim, 3)
        self.pose_fc = _mlp(cfg.style_dim, cfg.pose_dim, 3)
        self.exp_fc = _mlp(cfg.style_dim, cfg.exp_dim, 3)

    # -- encoding --------------------------------------------------------------------------
    def encode(self, images: torch.Tensor, with_feats: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        encoded: tuple[torch.Tensor, list[torch.Tensor]] = self.enc.net_app(images, with_feats=with_feats)
        return encoded

    def motion(self, wa: torch.Tensor) -> Motion:
        h = self.fc(wa)
        return Motion(lip=self.lip_fc(h), pose=self.pose_fc(h), exp=self.exp_fc(h), wa=wa)

    def encode_motion(self, frames: torch.Tensor) -> Motion:
        """One encoder pass per driving frame gives its lip, pose and expression coefficients."""
        wa, _ = self.encode(frames)
        return self.motion(wa)

    def compute_alpha_D(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Published API: (exp, pose, lip) coefficients, in that order."""
        m = self.encode_motion(frames)
        return m.exp, m.pose, m.lip

    # -- bases -----------------------------------------------------------------------------
    def direction_qr(self) -> tuple[torch.Tensor, torch.Tensor]:
        """LAPACK Householder QR of [lip|pose|exp] directions (+1e-8), signs left as LAPACK gives them.

        It runs in float32 on the CPU whatever the module's device, so every device uses the
        basis the published code uses; a sign-normalised QR would flip 22 of 36 columns.
        """
        m = torch.cat([self.direction_lipnonlip.weight, self.direction_exp.weight], -1) + 1e-8
        q, r = torch.linalg.qr(m.detach().float().cpu(), mode="reduced")
        return q.to(device=m.device, dtype=m.dtype), r

    def direction_basis(self) -> torch.Tensor:
        return self.direction_qr()[0]

    def latents(
        self,
        wa_src: torch.Tensor,
        lip: torch.Tensor,
        pose: torch.Tensor,
        exp: torch.Tensor,
        q: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The driven latent `wa_src + alpha_D Q^T` and the expression latent `e` (SPEC §3.4)."""
        q = self.direction_basis() if q is None else q
        alpha = torch.cat([lip, pose, exp], -1)
        directions = alpha @ q.T
        n_lp = self.cfg.lip_dim + self.cfg.pose_dim
        e = alpha[:, n_lp:] @ q[:, n_lp:].T
        return wa_src + directions, e

    # -- rendering -------------------------------------------------------------------------
    def prepare_source(self, source: torch.Tensor) -> SourceCache:
        wa, feats = self.encode(source, with_feats=True)
        normed = [eem.source_part(f) for eem, f in zip(self.dec.eems(), feats, strict=True)]
        return SourceCache(wa=wa, feats=feats, normed=normed)

    def render(
        self,
        source: SourceCache,
        lip: torch.Tensor,
        pose: torch.Tensor,
        exp: torch.Tensor,
        q: torch.Tensor | None = None,
        trace: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Fast path: render a batch of frames from coefficients against a prepared source."""
        latent, e = self.latents(source.wa, lip, pose, exp, q)
        frames: torch.Tensor = self.dec(latent, source.feats, e, normed=source.normed, trace=trace)
        return frames

    def render_reference(
        self, source: torch.Tensor, lip_img: torch.Tensor, pose_img: torch.Tensor, exp: torch.Tensor
    ) -> torch.Tensor:
        """The published V render (`test_EDTalk_V_use_exp_weight`): three encoder passes per call."""
        wa, feats = self.encode(source, with_feats=True)
        lip = self.motion(self.encode(lip_img)[0]).lip
        pose = self.motion(self.encode(pose_img)[0]).pose
        latent, e = self.latents(wa, lip, pose, exp)
        frames: torch.Tensor = self.dec(latent, feats, e)
        return frames
