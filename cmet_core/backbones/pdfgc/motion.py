"""PD-FGC's motion encoder, `net_motion` (kit SPEC_pdfgc.md section 5.2): one FAN trunk, four heads.

The trunk is a face-alignment network (pre-activation conv blocks, one hourglass, 68 landmark maps)
squeezed to a 512-d feature; the heads read head pose (6), eye (6: gaze in dims 2 and 3, blink in the
others), emotion (30: the code C-MET edits) and a mouth feature. The mouth head's output is discarded
(PD-FGC's lips come from audio) and its embedding `mouth_embed` is never run; both stay in the
module so the published file loads strictly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NEVER_RUN = ("to_mouth.", "mouth_embed.")
"""Key prefixes of the mouth head: in the checkpoint, never part of a render."""


@dataclass(frozen=True)
class MotionConfig:
    """Defaults are the published network (224 px input, so the 28x28 map before `fc` has 784 values)."""

    stem: int = 64
    mid: int = 128
    width: int = 256
    depth: int = 4
    landmarks: int = 68
    image_size: int = 224
    feat_dim: int = 512
    pose_dim: int = 6
    eye_dim: int = 6
    emo_dim: int = 30
    mouth_dim: int = 500


class ConvBlock(nn.Module):
    """Pre-activation block: three 3x3 convs (to out/2, out/4, out/4) concatenated, plus the shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout // 2, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = nn.Conv2d(cout // 2, cout // 4, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = nn.Conv2d(cout // 4, cout // 4, 3, 1, 1, bias=False)
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False)) if cin != cout else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return torch.cat((a, b, c), 1) + shortcut


class HourGlass(nn.Module):
    """Recursive hourglass; the 2x2 max-pool floors 7 px to 3, and the way back resizes bilinearly to the
    skip's size (align_corners False), a non-integer factor at the deepest level."""

    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(width, width))
            self.add_module(f"b2_{level}", ConvBlock(width, width))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(width, width))
            self.add_module(f"b3_{level}", ConvBlock(width, width))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = self._modules[f"b1_{level}"](x)  # type: ignore[misc]
        low = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))  # type: ignore[misc]
        low = self._level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)  # type: ignore[misc]
        low = self._modules[f"b3_{level}"](low)  # type: ignore[misc]
        return up + F.interpolate(low, size=up.shape[-2:], mode="bilinear", align_corners=False)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FAN(nn.Module):
    """The trunk (keys `model.*`): image (B,3,224,224) -> feature (B,512)."""

    def __init__(self, cfg: MotionConfig) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, cfg.stem, 7, 2, 3)
        self.bn1 = nn.BatchNorm2d(cfg.stem)
        self.conv2 = ConvBlock(cfg.stem, cfg.mid)
        self.conv3 = ConvBlock(cfg.mid, cfg.mid)
        self.conv4 = ConvBlock(cfg.mid, cfg.width)
        self.m0 = HourGlass(cfg.width, cfg.depth)
        self.top_m_0 = ConvBlock(cfg.width, cfg.width)
        self.conv_last0 = nn.Conv2d(cfg.width, cfg.width, 1)
        self.bn_end0 = nn.BatchNorm2d(cfg.width)
        self.l0 = nn.Conv2d(cfg.width, cfg.landmarks, 1)
        self.bn5 = nn.BatchNorm2d(cfg.landmarks)
        self.conv6 = nn.Conv2d(cfg.landmarks, 1, 3, 2, 1)
        self.fc = nn.Linear((cfg.image_size // 8) ** 2, cfg.feat_dim)

    def forward(self, x: torch.Tensor, trace: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        t: dict[str, torch.Tensor] = {} if trace is None else trace
        x = t["bn1"] = self.bn1(self.conv1(x))
        x = t["conv2"] = self.conv2(F.relu(x))
        x = t["conv3"] = self.conv3(F.max_pool2d(x, 2, stride=2))
        x = t["conv4"] = self.conv4(x)
        x = t["m0"] = self.m0(x)
        x = t["top_m_0"] = self.top_m_0(x)
        x = t["bn_end0"] = self.bn_end0(self.conv_last0(x))
        x = t["l0"] = self.l0(F.relu(x))
        x = t["conv6"] = self.conv6(F.relu(self.bn5(x)))
        return self.fc(F.relu(x.flatten(1)))  # type: ignore[no-any-return]


def _hidden(dim: int) -> nn.Sequential:
    """A head's 512-d hidden part `to_X`: linear, ReLU, BatchNorm1d, linear."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.BatchNorm1d(dim), nn.Linear(dim, dim))


def _embed(dim: int, out: int) -> nn.Sequential:
    """A head's code `X_embed`: ReLU, linear."""
    return nn.Sequential(nn.ReLU(), nn.Linear(dim, out))


class MotionEncoder(nn.Module):
    """Frames (B,3,224,224) in [-1,1] RGB -> raw pose (B,6), eye (B,6), emotion (B,30), mouth feature (B,512),
    in that order (the generator's style takes them in another: mouth, emotion, eye, pose)."""

    def __init__(self, cfg: MotionConfig = MotionConfig()) -> None:
        super().__init__()
        d = cfg.feat_dim
        self.model = FAN(cfg)
        self.to_mouth = _hidden(d)
        self.mouth_embed = _embed(d, cfg.mouth_dim)
        self.to_headpose = _hidden(d)
        self.headpose_embed = _embed(d, cfg.pose_dim)
        self.to_eye = _hidden(d)
        self.eye_embed = _embed(d, cfg.eye_dim)
        self.to_emo = _hidden(d)
        self.emo_embed = _embed(d, cfg.emo_dim)

    def forward(
        self, x: torch.Tensor, trace: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.model(x, trace)
        hidden = {name: getattr(self, f"to_{name}")(feat) for name in ("headpose", "eye", "emo")}
        if trace is not None:
            trace["feat"] = feat
            trace.update({f"to_{k}": v for k, v in hidden.items()})
        pose = self.headpose_embed(hidden["headpose"])
        return pose, self.eye_embed(hidden["eye"]), self.emo_embed(hidden["emo"]), self.to_mouth(feat)
