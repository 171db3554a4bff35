"""PD-FGC's four inference networks as one module, keyed as the kit's manifest keys them.

The original keeps four checkpoint files (`appearance_model.pth`, `motion_model.pth`, `audio_model.pth`,
`generator_model.pth`) behind four attributes of its Tester; `PDFGC` holds the same four under the same
attribute names, so its state dict is `<attribute>.<checkpoint key>`: the combined module the kit's
fill rule and digest are defined on, and one strict load of the four files after prefixing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cmet_core.backbones.pdfgc import appearance, generator, motion
from cmet_core.backbones.pdfgc.appearance import AppearanceConfig, AppearanceEncoder
from cmet_core.backbones.pdfgc.audio import AudioConfig, AudioEncoder
from cmet_core.backbones.pdfgc.generator import GeneratorConfig, ModulatedGenerator
from cmet_core.backbones.pdfgc.motion import MotionConfig, MotionEncoder

CHECKPOINT_FILES = {
    "net_appearance": "appearance_model.pth",
    "net_motion": "motion_model.pth",
    "net_audio": "audio_model.pth",
    "net_generator": "generator_model.pth",
}
"""Attribute (key prefix) -> the published checkpoint file it loads."""

UNREAD_PREFIXES = (
    *(f"net_appearance.{p}" for p in appearance.NEVER_RUN),
    *(f"net_motion.{p}" for p in motion.NEVER_RUN),
    *(f"net_generator.{p}" for p in generator.NEVER_RUN),
)
"""Keys held for a strict load that never shape a frame (the manifest's roles other than `read`)."""

CODE_WIDTHS = (("mouth", 500), ("emo", 30), ("eye", 6), ("pose", 6))
"""The codes after the identity feature in the generator's style vector, in that order (kit trap T4)."""


def _tuples(values: Mapping[str, Any]) -> dict[str, Any]:
    """A config's fields after a JSON round trip (lists back to tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


@dataclass(frozen=True)
class PDFGCConfig:
    """The four networks' sizes; the defaults are the published ones."""

    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    def __post_init__(self) -> None:
        codes = self.appearance.feat_dim + sum(w for _, w in CODE_WIDTHS)
        if self.generator.style_dim != codes:
            raise ValueError(f"generator style_dim {self.generator.style_dim} != identity + codes {codes}")
        if self.generator.channels[0] != self.appearance.map_dim:
            raise ValueError("the generator's first width must be the identity map's")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PDFGCConfig:
        return cls(
            appearance=AppearanceConfig(**_tuples(values["appearance"])),
            motion=MotionConfig(**_tuples(values["motion"])),
            audio=AudioConfig(**_tuples(values["audio"])),
            generator=GeneratorConfig(**_tuples(values["generator"])),
        )


TINY_PDFGC = PDFGCConfig(
    appearance=AppearanceConfig(
        stem=8, planes=(4, 8, 8, 8), blocks=(1, 1, 1, 1), groups=2, width_per_group=32, map_dim=8, classes=5
    ),
    motion=MotionConfig(stem=8, mid=8, width=8, depth=4, feat_dim=16),
    audio=AudioConfig(widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1), reduction=2, attention=8, feat_dim=16),
    generator=GeneratorConfig(channels=(8, 8, 8, 8, 4, 4), style_dim=32 + 542, n_mlp=1),
)
"""The published topology (224 px, every code width) with a few channels per layer: tests."""


class PDFGC(nn.Module):
    """`net_appearance`, `net_motion`, `net_audio` and `net_generator` under one state dict."""

    def __init__(self, cfg: PDFGCConfig = PDFGCConfig()) -> None:
        super().__init__()
        self.config = cfg
        self.net_appearance = AppearanceEncoder(cfg.appearance)
        self.net_motion = MotionEncoder(cfg.motion)
        self.net_audio = AudioEncoder(cfg.audio)
        self.net_generator = ModulatedGenerator(cfg.generator)


def unread_keys(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The keys of a `PDFGC` state dict that no render reads (loaded for strictness only)."""
    return sorted(k for k in state if k.startswith(UNREAD_PREFIXES))


def images_tensor(u8: np.ndarray) -> torch.Tensor:
    """uint8 RGB (N,224,224,3) -> (N,3,224,224) float32 in [-1,1]: the division by 255 in float64, then
    `x * 2 - 1` in float32 (the original's `to_Tensor`; EDTalk's order rounds differently)."""
    x = (np.ascontiguousarray(u8.transpose(0, 3, 1, 2)) / 255.0).astype(np.float32)
    return torch.from_numpy(x) * 2 - 1
