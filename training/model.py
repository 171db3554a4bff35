"""What training optimises: the connector plus the token contrastive module, and one step's losses.

Both directions of a pair go through the connector: i->j with the speech vector e2v(j)-e2v(i)
and j->i with its negative (and the negated reference), as the paper trains them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cmet_core.backbones.registry import backbone_spec
from cmet_core.networks.connector import Connector, ConnectorConfig
from training.config import ConfigError, LossConfig, TrainConfig
from training.data import PairBatch
from training.losses import TokenContrast, directional, reconstruction


def expression_width(backbone: str) -> int:
    """The width of the expression code the backbone's published networks give (EDTalk 10, PD-FGC 30)."""
    spec = backbone_spec(backbone)
    return spec.widths(spec.require_tools().full).exp


def connector_config(cfg: TrainConfig) -> ConnectorConfig:
    """The connector of `cfg.model`, as wide as the backbone's expression code and as long as the data's window."""
    width = expression_width(cfg.backbone)
    given = cfg.model.connector.get("exp_dim", width)
    if given != width:
        raise ConfigError(f"model.connector.exp_dim {given} differs from the {cfg.backbone} expression width {width}")
    return ConnectorConfig(**{**cfg.model.connector, "window": cfg.data.window, "exp_dim": width})


class TrainModel(nn.Module):
    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        self.connector = Connector(connector_config(cfg))
        con, m = self.connector.cfg, cfg.model
        self.contrast = TokenContrast(con.hidden, con.exp_dim, m.contrast_dim, m.temperature)


@dataclass
class StepLosses:
    total: torch.Tensor
    reconstruction: torch.Tensor
    contrastive: torch.Tensor
    directional: torch.Tensor
    forward_delta: torch.Tensor  # (B,T,exp) predicted i->j change
    backward_delta: torch.Tensor

    def scalars(self) -> dict[str, float]:
        return {
            "loss": float(self.total.detach()),
            "reconstruction": float(self.reconstruction),
            "contrastive": float(self.contrastive),
            "directional": float(self.directional),
        }


def step_losses(model: TrainModel, batch: PairBatch, weights: LossConfig) -> StepLosses:
    """L = L_rec(i->j) + L_rec(j->i) + w_cnt * L_cnt + w_dir * L_dir. Terms with weight 0 are still
    computed and logged, so the runs of an ablation report the same figures."""
    b, t = batch.size, batch.exp_i.shape[1]
    fwd = model.connector.run(batch.ref, batch.speech, batch.exp_i)
    bwd = model.connector.run(-batch.ref, -batch.speech, batch.exp_j)
    d_ij = fwd.delta.reshape(b, t, -1)
    d_ji = bwd.delta.reshape(b, t, -1)
    rec = reconstruction(batch.exp_i + d_ij, batch.exp_j, weights.reconstruction) + reconstruction(
        batch.exp_j + d_ji, batch.exp_i, weights.reconstruction
    )
    change = batch.exp_j - batch.exp_i
    cnt = (model.contrast(fwd.speech_emb, change) + model.contrast(bwd.speech_emb, -change)) / 2
    dirn = directional(d_ij, d_ji)
    total = rec
    if weights.contrastive:
        total = total + weights.contrastive * cnt
    if weights.directional:
        total = total + weights.directional * dirn
    return StepLosses(total, rec.detach(), cnt.detach(), dirn.detach(), d_ij.detach(), d_ji.detach())
