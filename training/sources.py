"""The pair source a configuration names: a real layout's clips or the synthetic benchmark's pairs."""

from __future__ import annotations

from cmet_core.backbones.registry import backbone_spec
from cmet_core.settings import get_settings
from training.config import TrainConfig
from training.data import ClipPairs, PairSource, find_clips
from training.model import expression_width
from training.synthetic import SyntheticPairs


def open_source(cfg: TrainConfig) -> PairSource:
    """Pairs as wide as `cfg.backbone`'s expression code (a real layout: its features, `BackboneSpec.exp_features`)."""
    d = cfg.data
    if d.layout == "synthetic":
        root = d.synthetic.features or get_settings().test_data / "e2v"
        width = expression_width(cfg.backbone)
        return SyntheticPairs(root, cfg.seed, d.window, d.synthetic, d.teacher_forcing, width)
    assert d.root is not None
    return ClipPairs(
        find_clips(d.layout, d.root, backbone_spec(cfg.backbone).exp_features),
        seed=cfg.seed,
        window=d.window,
        held_out_speakers=d.held_out_speakers,
        emotions=d.emotions,
        teacher_forcing=d.teacher_forcing,
        width=expression_width(cfg.backbone),
    )
