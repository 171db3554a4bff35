"""A synthetic benchmark on the REAL emotion2vec+ features: can the connector turn speech vectors
of emotions it never saw into the right facial change?

Ground truth:
* speech: each MEAD clip's emotion2vec+ embedding minus its speaker's neutral mean;
* face: a fixed hidden nonlinear map H (a seeded random two-layer tanh network, its inputs scaled
  so the tanh is well out of its linear range) turns a speech vector into an expression change as
  wide as the backbone's code (EDTalk 10, PD-FGC 30); each speaker adds a gain on that change and a
  neutral expression of their own, and every pair rides on a neutral expression track (a smooth
  random walk).

Training sees the 8 basic MEAD emotions only (neutral included), as single clips and as random
weighted blends of three clips, whose truth is H of the blend: blends fill the space between the
basic emotions, where the unseen ones lie. Evaluation: held-out MEAD clips, and the 6 extended
emotions (Gemini TTS clips) plus MELD's sarcasm, never seen, whose vectors are taken against the
MEAD neutral mean as the built-in emotion library takes them. The goal figure is the mean over the
6 extended emotions of the cosine between the mean predicted change and H of their vector.
"""

from __future__ import annotations

import math
import multiprocessing
import tempfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cmet_core.emotion.library import list_features
from training.config import SyntheticDataConfig, TrainConfig
from training.data import PairBatch, fingerprint, step_generator
from training.trainer import Trainer

BASIC = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
EXTENDED = ("charismatic", "desirous", "empathetic", "envious", "romantic", "sarcastic")
UNSEEN = tuple(f"gemini/{e}" for e in EXTENDED) + ("MELD/sarcastic",)
GOAL = 0.9


def _load(root: Path, folder: str, emotion: str) -> list[tuple[str, str, np.ndarray]]:
    """(speaker, file name, embedding) of every feature file; the speaker is the name's prefix (M003_...)."""
    return [
        (p.name.split("_")[0], p.name, np.load(p).astype(np.float64).reshape(-1))
        for p in list_features(root / folder / emotion)
    ]


class HiddenMap:
    """The fixed nonlinear speech -> face map that defines the ground truth."""

    def __init__(self, seed: int, units: int, dim: int, scale: float, width: int = 10) -> None:
        g = np.random.default_rng(1000 + seed)
        self.w1 = torch.from_numpy(g.standard_normal((units, dim)) / math.sqrt(dim))
        self.w2 = torch.from_numpy(g.standard_normal((width, units)) / math.sqrt(units))
        self.scale = scale

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """(N,dim) float64 -> (N,width) float32."""
        return (torch.tanh(v @ self.w1.T / self.scale) @ self.w2.T).float()


def _tracks(g: torch.Generator, n: int, frames: int, width: int) -> torch.Tensor:
    steps = 0.05 * torch.randn(n, frames, width, generator=g)
    return 0.3 * torch.randn(n, 1, width, generator=g) + steps.cumsum(1)


@dataclass
class _Clips:
    vectors: torch.Tensor  # (N,dim) float64
    speaker: torch.Tensor  # (N,) speaker index
    emotion: list[str]


class SyntheticPairs:
    """Pairs neutral -> emotion with synthetic expressions `width` wide (the backbone's expression width);
    a PairSource for the trainer."""

    def __init__(
        self,
        root: Path,
        seed: int,
        window: int,
        cfg: SyntheticDataConfig = SyntheticDataConfig(),
        teacher_forcing: float = 0.5,
        width: int = 10,
    ) -> None:
        self.seed, self.window, self.cfg, self.teacher_forcing = seed, window, cfg, teacher_forcing
        self.width = width
        g = np.random.default_rng(seed)
        rows = {e: _load(root, "MEAD", e) for e in BASIC}
        if not all(rows.values()):
            raise ValueError(f"{root} lacks MEAD feature folders for {', '.join(e for e, r in rows.items() if not r)}")
        speakers = sorted({s for r in rows.values() for s, _, _ in r})
        train, held = [], []
        for emotion in BASIC:
            order = g.permutation(len(rows[emotion]))
            cut = max(1, round(len(order) * cfg.held_out_share))
            held += [(emotion, *rows[emotion][k]) for k in sorted(order[:cut])]
            train += [(emotion, *rows[emotion][k]) for k in sorted(order[cut:])]
        neutral = defaultdict(list)
        for emotion, speaker, _, vec in train:
            if emotion == "neutral":
                neutral[speaker].append(vec)
        self.neutral_mean = {s: np.mean(neutral[s], axis=0) for s in speakers}
        everyone = np.mean([v for vs in neutral.values() for v in vs], axis=0)
        self.gain = torch.from_numpy(1 + g.uniform(-cfg.gain_spread, cfg.gain_spread, len(speakers))).float()
        self.offset = torch.from_numpy(g.normal(0, 0.3, (len(speakers), width))).float()
        self.train = self._clips(train, speakers)
        self.held = self._clips(held, speakers)
        self.unseen = {
            name: np.mean([v for _, _, v in _load(root, *name.split("/"))], axis=0) - everyone for name in UNSEEN
        }
        self.truth = HiddenMap(seed, cfg.hidden_units, everyone.shape[0], 1.0, width)
        self.truth.scale = float((self.train.vectors @ self.truth.w1.T).std()) / cfg.nonlinearity
        self.fingerprint = fingerprint(
            [f"synthetic|{seed}|{width}|{cfg.model_dump_json()}"]
            + sorted(f"{e}|{s}|{n}" for e, s, n, _ in train + held)
        )

    def _clips(self, rows: list, speakers: list[str]) -> _Clips:
        vectors = torch.from_numpy(np.stack([vec - self.neutral_mean[s] for _, s, _, vec in rows]))
        return _Clips(vectors, torch.tensor([speakers.index(s) for _, s, _, _ in rows]), [e for e, _, _, _ in rows])

    def _pairs(
        self,
        g: torch.Generator,
        speech: torch.Tensor,
        speaker: torch.Tensor,
        gain: torch.Tensor,
        emotions: list[str],
        forcing: float,
    ) -> PairBatch:
        n, t = speech.shape[0], self.window
        change = (gain[:, None] * self.truth(speech))[:, None].expand(n, t, self.width)
        exp_i = self.offset[speaker][:, None] + _tracks(g, n, t, self.width)
        forced = (torch.rand(n, generator=g) < forcing).float()[:, None, None]
        return PairBatch(change * forced, speech.float()[:, None], exp_i, exp_i + change, ["neutral"] * n, emotions)

    def train_batch(self, step: int, size: int) -> PairBatch:
        g = step_generator(self.seed, step)
        clips = self.train
        idx = torch.randint(0, len(clips.emotion), (size, 3), generator=g)
        weights = torch.rand(size, 3, generator=g, dtype=torch.float64)
        single = torch.rand(size, generator=g) >= self.cfg.blend_share
        weights[single] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
        weights = weights / weights.sum(1, keepdim=True)
        speech = (weights[..., None] * clips.vectors[idx]).sum(1)
        gain = (weights.float() * self.gain[clips.speaker[idx]]).sum(1)
        emotions = [clips.emotion[int(k)] if s else "blend" for k, s in zip(idx[:, 0], single, strict=True)]
        return self._pairs(g, speech, clips.speaker[idx[:, 0]], gain, emotions, self.teacher_forcing)

    def reference_batch(self, size: int) -> PairBatch:
        """Single training clips (no blends), for the centroids of `centroid_acc`."""
        return self._of_clips(step_generator(self.seed, -2), self.train, size)

    def _of_clips(self, g: torch.Generator, clips: _Clips, size: int) -> PairBatch:
        """`size` single clips in order (repeated as needed), no teacher forcing: a fixed evaluation draw."""
        idx = torch.arange(size) % len(clips.emotion)
        speaker = clips.speaker[idx]
        emotions = [clips.emotion[int(k)] for k in idx]
        return self._pairs(g, clips.vectors[idx], speaker, self.gain[speaker], emotions, 0.0)

    def eval_batches(self, pairs: int) -> dict[str, PairBatch]:
        g = step_generator(self.seed, -1)
        held = self._of_clips(g, self.held, pairs)
        per = max(1, pairs // len(self.unseen))
        names = [name for name in self.unseen for _ in range(per)]
        speech = torch.from_numpy(np.stack([self.unseen[name] for name in names]))
        speaker = torch.randint(0, len(self.gain), (len(names),), generator=g)
        unseen = self._pairs(g, speech, speaker, torch.ones(len(names)), names, 0.0)
        return {"held_out": held, "unseen": unseen}


def linear_reference(source: SyntheticPairs, pairs: int = 20000, ridge: float = 1e-2) -> float:
    """The goal figure of a ridge regression from speech vector to change on the same training
    draws: how far a linear map gets, to read the connector's figure against."""
    batch = source.train_batch(0, pairs)
    x = batch.speech[:, 0].double()
    y = (batch.exp_j - batch.exp_i)[:, 0].double()
    w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    cosines = []
    for e in EXTENDED:
        v = torch.from_numpy(source.unseen[f"gemini/{e}"])[None]
        cosines.append(float(torch.nn.functional.cosine_similarity(v @ w, source.truth(v).double(), dim=1)))
    return float(np.mean(cosines))


def goal_figure(metrics: dict[str, float]) -> float:
    """Mean cosine over the 6 extended emotions (MELD's sarcasm is reported beside it)."""
    return float(np.mean([metrics[f"unseen/emotion_cos/gemini/{e}"] for e in EXTENDED]))


VARIANTS = {"recon": (0.0, 0.0), "recon+cnt": (0.1, 0.0), "recon+cnt+dir": (0.1, 0.05)}


@dataclass
class BenchmarkRow:
    variant: str
    seed: int
    unseen_cos: float
    meld_sarcastic_cos: float
    held_out_cos: float
    held_out_recon: float
    held_out_centroid_acc: float


def _one(cfg_json: str, seed: int, variant: str, run_dir: Path, threads: int | None, progress: bool) -> BenchmarkRow:
    """One (variant, seed) run with the real trainer; top-level so a process pool can run it."""
    from training.sources import open_source  # cycle: synthetic <-> sources

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig.model_validate_json(cfg_json)
    w_cnt, w_dir = VARIANTS[variant]
    loss = cfg.loss.model_copy(update={"contrastive": w_cnt, "directional": w_dir})
    cfg = cfg.model_copy(update={"seed": seed, "loss": loss})
    m = Trainer(cfg, open_source(cfg), run_dir, progress=progress).train().metrics
    return BenchmarkRow(
        variant,
        seed,
        goal_figure(m),
        m["unseen/emotion_cos/MELD/sarcastic"],
        m["held_out/direction_cos"],
        m["held_out/recon_l1"],
        m["held_out/centroid_acc"],
    )


def run_benchmark(
    cfg: TrainConfig, seeds: list[int], variants: list[str], out_dir: Path | None = None, jobs: int = 1
) -> list[BenchmarkRow]:
    """Every (variant, seed), `jobs` at a time in spawned processes of one thread each; runs go under `out_dir`."""

    if cfg.data.layout != "synthetic":
        raise ValueError(f"the synthetic benchmark needs a synthetic config, not layout {cfg.data.layout!r}")
    with tempfile.TemporaryDirectory(prefix="cmet-synthetic-") as scratch:
        base = Path(out_dir) if out_dir is not None else Path(scratch)
        runs = [
            (cfg.model_dump_json(), seed, variant, base / f"{variant}-seed{seed}")
            for variant in variants
            for seed in seeds
        ]
        if jobs == 1:
            return [_one(*run, None, True) for run in runs]
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(_one, *zip(*runs, strict=True), [1] * len(runs), [False] * len(runs)))


def summarise(rows: list[BenchmarkRow]) -> list[str]:
    """Mean +- std over seeds per variant, then every run."""
    lines = [
        f"{'variant':<15} {'unseen cos (6 ext.)':>22} {'MELD sarcasm':>14} {'held-out cos':>14} {'held-out L1':>13} "
        f"{'centroid acc':>13}"
    ]

    def stat(runs: list[BenchmarkRow], field: str) -> str:
        values = np.array([getattr(r, field) for r in runs])
        return f"{values.mean():.3f} +- {values.std():.3f}"

    for variant in dict.fromkeys(r.variant for r in rows):
        mine = [r for r in rows if r.variant == variant]
        lines.append(
            f"{variant:<15} {stat(mine, 'unseen_cos'):>22} {stat(mine, 'meld_sarcastic_cos'):>14} "
            f"{stat(mine, 'held_out_cos'):>14} {stat(mine, 'held_out_recon'):>13} "
            f"{stat(mine, 'held_out_centroid_acc'):>13}"
        )
    lines.append(f"over {len(set(r.seed for r in rows))} seeds; per run:")
    lines += [
        f"  {r.variant:<15} seed {r.seed}: unseen {r.unseen_cos:.3f}, MELD {r.meld_sarcastic_cos:.3f}, "
        f"held-out {r.held_out_cos:.3f}"
        for r in rows
    ]
    return lines
