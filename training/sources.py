"""The pair source a configuration names: a real layout's clips or the synthetic benchmark's pairs."""

from __future__ import annotations

from cmet_core.settings import get_settings
from training.config import TrainConfig
from training.data import ClipPairs, PairSource, find_clips
from training.synthetic import SyntheticPairs


def open_source(cfg: TrainConfig) -> PairSource:
    d = cfg.data
    if d.layout == "synthetic":
        root = d.synthetic.features or get_settings().test_data / "e2v"
        return SyntheticPairs(root, cfg.seed, d.window, d.synthetic, d.teacher_forcing)
    assert d.root is not None
    return ClipPairs(
        find_clips(d.layout, d.root),
        seed=cfg.seed,
        window=d.window,
        held_out_speakers=d.held_out_speakers,
        emotions=d.emotions,
        teacher_forcing=d.teacher_forcing,
    )
