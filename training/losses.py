"""The paper's training objective for the connector.

L = L_rec(i->j) + L_rec(j->i) + w_cnt * L_cnt + w_dir * L_dir, with
- L_rec: error of the edited expression against the target emotion's expression, both ways;
- L_cnt: a bidirectional (symmetric InfoNCE) contrastive loss between paired speech and visual
  tokens, so the connector's speech embedding lines up with the visual change it must cause;
- L_dir = 1 + cos(f_i->j, f_j->i): the change from i to j and the change back should point in
  opposite directions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reconstruction(predicted: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    return F.l1_loss(predicted, target) if kind == "l1" else F.mse_loss(predicted, target)


def directional(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """1 + cos between the i->j and j->i changes (per sample, frames averaged), mean over the batch."""
    return (1 + F.cosine_similarity(forward.mean(1), backward.mean(1), dim=-1)).mean()


class TokenContrast(nn.Module):
    """Speech tokens (from the connector's speech embedding) vs visual tokens (a 1-D convolution over
    the window of expression changes), contrasted both ways across the batch."""

    def __init__(self, hidden: int, exp_dim: int = 10, dim: int = 64, temperature: float = 0.1) -> None:
        super().__init__()
        self.visual = nn.Sequential(
            nn.Conv1d(exp_dim, dim, kernel_size=3, padding=1), nn.GELU(), nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        )
        self.audio = nn.Linear(hidden, dim)
        self.temperature = temperature

    def forward(self, speech_emb: torch.Tensor, visual_change: torch.Tensor) -> torch.Tensor:
        """speech_emb (B,1,hidden), visual_change (B,T,exp_dim) -> scalar loss."""
        a = F.normalize(self.audio(speech_emb.squeeze(1)), dim=-1)
        v = F.normalize(self.visual(visual_change.transpose(1, 2)).mean(-1), dim=-1)
        logits = a @ v.T / self.temperature
        labels = torch.arange(a.shape[0], device=a.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
