"""PD-FGC's audio encoder, `net_audio` (kit SPEC_pdfgc.md section 5.3): mel windows -> mouth codes.

A ResNet with squeeze-excitation blocks over one (1, 80, 20) mel window, self-attentive pooling over
its 3 remaining time steps, a 512-d audio feature and the 500-d mouth code the generator takes.
Trap T7: the stem and every block's first conv apply ReLU *before* their BatchNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AudioConfig:
    """Defaults are the published network; the 80 mel bins leave `mels // 8` rows after the stages."""

    widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    mels: int = 80
    reduction: int = 8
    attention: int = 128
    feat_dim: int = 512
    mouth_dim: int = 500


class SqueezeExcite(nn.Module):
    """Channel gates from the spatial mean: linear C -> C/r, ReLU, linear back, sigmoid (keys `fc.0`, `fc.2`)."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate: torch.Tensor = self.fc(x.mean(dim=(2, 3)))
        return x * gate[:, :, None, None]


class SEBlock(nn.Module):
    """conv3x3 (stride), ReLU, BN; conv3x3, BN; squeeze-excitation; plus the shortcut; ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, reduction: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout, reduction)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(F.relu(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNetSE(nn.Module):
    """The trunk and pooling (keys `model.*`): windows (B,1,80,20) -> audio feature (B,512)."""

    def __init__(self, cfg: AudioConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, cfg.widths[0], 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(cfg.widths[0])
        cin = cfg.widths[0]
        stages = []
        for i, (width, count) in enumerate(zip(cfg.widths, cfg.blocks, strict=True)):
            blocks = []
            for j in range(count):
                blocks.append(SEBlock(cin, width, 2 if (i > 0 and j == 0) else 1, cfg.reduction))
                cin = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        pooled = cfg.widths[-1] * (cfg.mels // 8)
        self.attention = nn.Sequential(
            nn.Conv1d(pooled, cfg.attention, 1),
            nn.ReLU(),
            nn.BatchNorm1d(cfg.attention),
            nn.Conv1d(cfg.attention, pooled, 1),
            nn.Softmax(dim=2),
        )
        self.fc = nn.Linear(pooled, cfg.feat_dim)

    def forward(self, x: torch.Tensor, trace: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        t: dict[str, torch.Tensor] = {} if trace is None else trace
        x = t["bn1"] = self.bn1(F.relu(self.conv1(x)))
        for i, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            x = t[f"layer{i}"] = stage(x)
        x = t["att_in"] = x.reshape(x.shape[0], -1, x.shape[-1])  # row c*H + h, time last
        w = t["att_w"] = self.attention(x)
        return self.fc((x * w).sum(dim=2))  # type: ignore[no-any-return]


class AudioEncoder(nn.Module):
    """Mel windows (B,1,80,20) -> audio feature (B,512) and the raw mouth code (B,500), before PD-FGC's x1.5."""

    def __init__(self, cfg: AudioConfig = AudioConfig()) -> None:
        super().__init__()
        self.model = ResNetSE(cfg)
        self.mouth_embed = nn.Sequential(nn.ReLU(), nn.Linear(cfg.feat_dim, cfg.mouth_dim))

    def forward(
        self, x: torch.Tensor, trace: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.model(x, trace)
        return feat, self.mouth_embed(feat)
