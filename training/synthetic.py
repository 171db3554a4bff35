"""A synthetic benchmark on the REAL emotion2vec+ features: can the connector turn speech vectors
of emotions it never saw into the right facial change?

Ground truth comes from a fixed hidden nonlinear map H (a seeded random two-layer network) from
speech semantic vectors (clip embedding minus its speaker's neutral mean) to 10-d expression
directions, plus per-speaker variation (a gain on the change) and a neutral expression track
(a smooth random walk). Training sees the 8 basic MEAD emotions only; evaluation asks for the
6 extended (gemini) emotions and MELD's sarcasm, whose vectors are taken against the MEAD
neutral mean as the built-in library takes them, and scores the cosine between the mean
predicted change and H of their vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cmet_core.emotions import list_features
from cmet_core.models.connector import Connector, ConnectorConfig
from training.losses import LossWeights, TokenContrast, directional, reconstruction

BASIC = ("angry", "contempt", "disgusted", "fear", "happy", "sad", "surprised")
UNSEEN = {("gemini", e) for e in ("charismatic", "desirous", "empathetic", "envious", "romantic", "sarcastic")} | {("MELD", "sarcastic")}
SMALL_CONNECTOR = ConnectorConfig(hidden=64, layers=2, heads=2, ffn=128, dropout=0.0, speech_dim=1024, max_positions=16)


@dataclass(frozen=True)
class SyntheticConfig:
    steps: int = 400
    batch: int = 64
    lr: float = 2e-3
    weights: LossWeights = LossWeights()
    seed: int = 0


def _load(root: Path, folder: str, emotion: str) -> dict[str, list[np.ndarray]]:
    """Embeddings by speaker (the file-name prefix, e.g. M003)."""
    out: dict[str, list[np.ndarray]] = {}
    for path in list_features(root / folder / emotion):
        out.setdefault(path.name.split("_")[0], []).append(np.load(path).astype(np.float64).reshape(-1))
    return out


class HiddenMap:
    """The fixed nonlinear speech -> face map that defines the ground truth."""

    def __init__(self, seed: int, scale: float) -> None:
        g = np.random.default_rng(1000 + seed)
        self.w1 = g.standard_normal((64, 1024)) / math.sqrt(1024)
        self.w2 = g.standard_normal((10, 64)) / math.sqrt(64)
        self.scale = scale

    def __call__(self, v: np.ndarray) -> np.ndarray:
        return (self.w2 @ np.tanh(self.w1 @ (v / self.scale))).astype(np.float32)


@dataclass
class Data:
    train_vectors: np.ndarray  # (N,1024) clip vectors of basic emotions
    train_gain: np.ndarray  # (N,) per-speaker gain
    unseen: dict[str, np.ndarray]  # name -> (1024,) vector
    truth: HiddenMap


def build(root: Path, seed: int) -> Data:
    neutral = _load(root, "MEAD", "neutral")
    neutral_mean = {s: np.mean(v, axis=0) for s, v in neutral.items()}
    everyone = np.mean([v for vs in neutral.values() for v in vs], axis=0)
    g = np.random.default_rng(seed)
    gains = {s: float(g.uniform(0.8, 1.2)) for s in neutral_mean}
    vectors, gain = [], []
    for emotion in BASIC:
        for speaker, clips in _load(root, "MEAD", emotion).items():
            for clip in clips:
                vectors.append(clip - neutral_mean[speaker])
                gain.append(gains[speaker])
    train = np.stack(vectors)
    unseen = {f"{folder}/{e}": np.mean([c for cs in _load(root, folder, e).values() for c in cs], axis=0) - everyone for folder, e in sorted(UNSEEN)}
    scale = float(np.median(np.linalg.norm(train, axis=1))) / math.sqrt(1024) * 4
    return Data(train, np.array(gain), unseen, HiddenMap(seed, scale))


def _tracks(g: torch.Generator, batch: int, frames: int) -> torch.Tensor:
    """Neutral expression tracks: smooth random walks."""
    steps = 0.05 * torch.randn(batch, frames, 10, generator=g)
    return torch.randn(batch, 1, 10, generator=g) * 0.5 + steps.cumsum(1)


def _blend_batch(g: torch.Generator, vectors: torch.Tensor, gains: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the batch: single clips; half: random weighted blends of three clips (their truth is H of
    the blend). Blends teach the connector the space between the basic emotions, which is where the
    unseen ones lie; without them it learns seven clusters and maps new vectors onto them."""
    idx = torch.randint(0, len(vectors), (batch, 3), generator=g)
    weights = torch.rand(batch, 3, generator=g)
    weights[: batch // 2] = torch.tensor([1.0, 0.0, 0.0])
    weights = weights / weights.sum(1, keepdim=True)
    return (weights[..., None] * vectors[idx]).sum(1), (weights * gains[idx]).sum(1)


def train(data: Data, cfg: SyntheticConfig, use_contrastive: bool, use_directional: bool) -> Connector:
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    model = Connector(SMALL_CONNECTOR)
    contrast = TokenContrast(SMALL_CONNECTOR.hidden)
    params = list(model.parameters()) + (list(contrast.parameters()) if use_contrastive else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    vectors = torch.from_numpy(data.train_vectors).float()
    gains = torch.from_numpy(data.train_gain).float()
    t = SMALL_CONNECTOR.window
    model.train()
    for _ in range(cfg.steps):
        speech_np, gain = _blend_batch(g, vectors, gains, cfg.batch)
        speech = speech_np.unsqueeze(1)
        direction = torch.from_numpy(np.stack([data.truth(v) for v in speech_np.double().numpy()]))
        change = (gain[:, None] * direction).unsqueeze(1).expand(-1, t, -1)
        exp_i = _tracks(g, cfg.batch, t)
        exp_j = exp_i + change
        zeros = torch.zeros_like(exp_i)
        fwd = model.run(zeros, speech, exp_i)
        bwd = model.run(zeros, -speech, exp_j)
        d_ij, d_ji = fwd.delta.reshape(cfg.batch, t, 10), bwd.delta.reshape(cfg.batch, t, 10)
        loss = reconstruction(exp_i + d_ij, exp_j) + reconstruction(exp_j + d_ji, exp_i)
        if use_contrastive:
            loss = loss + cfg.weights.contrastive * (contrast(fwd.speech_emb, change) + contrast(bwd.speech_emb, -change)) / 2
        if use_directional:
            loss = loss + cfg.weights.directional * directional(d_ij, d_ji)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def cosines(model: Connector, data: Data, vectors: dict[str, np.ndarray], seed: int = 123) -> dict[str, float]:
    """Per vector: cosine of the mean predicted change (over neutral tracks) with the truth."""
    g = torch.Generator().manual_seed(seed)
    t = model.cfg.window
    out = {}
    for name, v in vectors.items():
        exp = _tracks(g, 32, t)
        speech = torch.from_numpy(v).float().expand(32, 1, -1)
        delta = model.run(torch.zeros_like(exp), speech, exp).delta.reshape(32, t, 10).mean((0, 1))
        out[name] = float(F.cosine_similarity(delta, torch.from_numpy(data.truth(v)), dim=0))
    return out


VARIANTS = {"recon": (False, False), "recon+cnt": (True, False), "recon+cnt+dir": (True, True)}


def ablation(root: Path, seeds: list[int], cfg: SyntheticConfig) -> dict[str, list[float]]:
    """Mean unseen-emotion cosine per variant and seed."""
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for seed in seeds:
        data = build(root, seed)
        for variant, (cnt, dirn) in VARIANTS.items():
            model = train(data, SyntheticConfig(cfg.steps, cfg.batch, cfg.lr, cfg.weights, seed), cnt, dirn)
            results[variant].append(float(np.mean(list(cosines(model, data, data.unseen).values()))))
    return results
