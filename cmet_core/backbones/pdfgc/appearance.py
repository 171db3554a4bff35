"""PD-FGC's appearance (identity) encoder, `net_appearance` (kit SPEC_pdfgc.md section 5.1).

A ResNeXt-50 32x4d trunk in torchvision's key layout (keys `model.*`), then the identity feature
(the mean of the last stage over space) and the identity map (a 1x1 conv to 512 channels) that
replaces the generator's constant input. Two classifiers of the checkpoint never shape a frame:
torchvision's own `model.fc` (never run) and the class head `fc` (run by the original, its scores
discarded; its loader does not even load it). Both are kept as modules so the published files load
strictly, and neither runs here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NEVER_RUN = ("model.fc.", "fc.")
"""Key prefixes of the two classifiers: in the checkpoint, never part of a render (manifest roles
`never-read` and `computed-output-unused`)."""


@dataclass(frozen=True)
class AppearanceConfig:
    """Defaults are the published network; `planes` are the stages' bottleneck widths (output 4x)."""

    stem: int = 64
    planes: tuple[int, int, int, int] = (64, 128, 256, 512)
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    groups: int = 32
    width_per_group: int = 4
    map_dim: int = 512
    imagenet_classes: int = 1000
    classes: int = 5995

    @property
    def feat_dim(self) -> int:
        return self.planes[-1] * 4


class Bottleneck(nn.Module):
    """1x1 reduce, grouped 3x3 (carrying the stride), 1x1 expand; BN after each; residual; ReLU."""

    def __init__(self, cin: int, planes: int, stride: int, cfg: AppearanceConfig) -> None:
        super().__init__()
        width = int(planes * cfg.width_per_group / 64) * cfg.groups
        cout = planes * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=cfg.groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNeXt(nn.Module):
    """The trunk: 7x7/2 stem, BN, ReLU, 3x3/2 max-pool, four bottleneck stages (strides 1, 2, 2, 2)."""

    def __init__(self, cfg: AppearanceConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, cfg.stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.stem)
        cin = cfg.stem
        stages = []
        for i, (planes, count) in enumerate(zip(cfg.planes, cfg.blocks, strict=True)):
            blocks = []
            for j in range(count):
                blocks.append(Bottleneck(cin, planes, 2 if (i > 0 and j == 0) else 1, cfg))
                cin = planes * 4
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(cfg.feat_dim, cfg.imagenet_classes)  # torchvision's classifier: never run

    def forward(self, x: torch.Tensor, trace: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        if trace is not None:
            trace["stem"] = x
        for i, stage in enumerate((self.layer1, self.layer2, self.layer3, self.layer4), start=1):
            x = stage(x)
            if trace is not None:
                trace[f"layer{i}"] = x
        return x


class AppearanceEncoder(nn.Module):
    """Image (B,3,224,224) in [-1,1] RGB -> identity feature (B,2048) and identity map (B,512,7,7)."""

    def __init__(self, cfg: AppearanceConfig = AppearanceConfig()) -> None:
        super().__init__()
        self.model = ResNeXt(cfg)
        self.conv1x1 = nn.Conv2d(cfg.feat_dim, cfg.map_dim, 1)
        self.fc = nn.Linear(cfg.feat_dim, cfg.classes)  # the class head: its scores serve no render

    def forward(
        self, x: torch.Tensor, trace: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.model(x, trace)
        id_feat = feat.mean(dim=(2, 3))
        id_map = F.adaptive_avg_pool2d(self.conv1x1(feat), 7)
        return id_feat, id_map
