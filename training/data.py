"""Training data: clips of the official layouts, emotion pairs, and batches of T-frame windows.

Layouts (features sit beside the media, as the official code keeps them):

* MEAD-style: ``ROOT/<speaker>/front/<emotion>/level_<k>/NNN.mp4`` and ``NNN.wav``, the backbone's
  expression codes beside the video (EDTalk's weights ``NNN_ED_exp.npy``, frames x 10; PD-FGC's emotion
  codes ``NNN_PD_FGC_emo.npy``, frames x 30: `BackboneSpec.exp_features`), emotion2vec+ utterance
  features ``emotion2vec+large_features/NNN.npy`` beside the wav.
* CREMA-D: ``ROOT/VideoFlash/<actor>_<sentence>_<EMO>_<level>.flv`` and
  ``ROOT/AudioWAV/<same>.wav``, features named the same way beside them.

A pair is one speaker saying one sentence in emotions i and j; it trains both directions. The
two clips differ in length, so a window at relative position p of clip i is paired with the
window at the same relative position of clip j (a uniform time warp): the sentence is the same,
so the same part of it is being said.

Batches are a pure function of (seed, step): resuming at step k draws exactly the windows the
uninterrupted run drew there, with no sampler state to save.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

E2V_DIR = "emotion2vec+large_features"
EXP_TAG = "ED_exp"
"""EDTalk's features' tag (`BackboneSpec.exp_features`), the default of clips found without naming a backbone."""
VIDEO_SUFFIXES = (".mp4", ".flv", ".avi", ".mov", ".mkv")
CREMA_EMOTIONS = {"ANG": "angry", "DIS": "disgusted", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMA_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")


@dataclass(frozen=True)
class Clip:
    speaker: str
    sentence: str
    emotion: str
    level: str
    video: Path | None
    wav: Path | None
    exp_tag: str = EXP_TAG

    @property
    def exp_path(self) -> Path:
        assert self.video is not None
        return self.video.with_name(f"{self.video.stem}_{self.exp_tag}.npy")

    @property
    def e2v_path(self) -> Path:
        assert self.wav is not None
        return self.wav.parent / E2V_DIR / f"{self.wav.stem}.npy"

    @property
    def has_features(self) -> bool:
        return self.video is not None and self.wav is not None and self.exp_path.is_file() and self.e2v_path.is_file()


def _media(folder: Path, stem: str) -> Path | None:
    for suffix in VIDEO_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def mead_clips(root: Path, exp_tag: str = EXP_TAG) -> list[Clip]:
    """Every clip of a MEAD-style tree that has a video or a wav (its expression features tagged `exp_tag`)."""
    clips = []
    for level_dir in sorted(Path(root).glob("*/front/*/level_*")):
        speaker, emotion, level = level_dir.parts[-4], level_dir.parts[-2], level_dir.name.removeprefix("level_")
        stems = {p.stem for p in level_dir.iterdir() if p.suffix in (*VIDEO_SUFFIXES, ".wav")}
        for stem in sorted(stems):
            wav = level_dir / f"{stem}.wav"
            video = _media(level_dir, stem)
            clips.append(Clip(speaker, stem, emotion, level, video, wav if wav.is_file() else None, exp_tag))
    return clips


def crema_d_clips(root: Path, exp_tag: str = EXP_TAG) -> list[Clip]:
    """Every clip of a CREMA-D tree (VideoFlash/ and AudioWAV/) whose name parses."""
    root = Path(root)
    stems: set[str] = set()
    for folder in (root / "VideoFlash", root / "AudioWAV"):
        if folder.is_dir():
            stems |= {p.stem for p in folder.iterdir() if p.suffix in (*VIDEO_SUFFIXES, ".wav")}
    clips = []
    for stem in sorted(stems):
        m = _CREMA_NAME.match(stem)
        if m is None or m["emotion"] not in CREMA_EMOTIONS:
            continue
        wav = root / "AudioWAV" / f"{stem}.wav"
        clips.append(
            Clip(
                m["actor"],
                m["sentence"],
                CREMA_EMOTIONS[m["emotion"]],
                m["level"],
                _media(root / "VideoFlash", stem),
                wav if wav.is_file() else None,
                exp_tag,
            )
        )
    return clips


def find_clips(layout: str, root: Path, exp_tag: str = EXP_TAG) -> list[Clip]:
    if layout == "mead":
        return mead_clips(root, exp_tag)
    if layout == "crema-d":
        return crema_d_clips(root, exp_tag)
    raise ValueError(f"unknown layout {layout!r}")


@dataclass(frozen=True)
class Pair:
    """Clip i and clip j of one speaker and sentence, in two emotions (trained both ways)."""

    i: int
    j: int


def make_pairs(clips: list[Clip]) -> list[Pair]:
    """All (i, j) with the same speaker and sentence and different emotions, i before j; deterministic."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, clip in enumerate(clips):
        groups[(clip.speaker, clip.sentence)].append(index)
    pairs = []
    for key in sorted(groups):
        members = groups[key]
        pairs += [
            Pair(a, b) for n, a in enumerate(members) for b in members[n + 1 :] if clips[a].emotion != clips[b].emotion
        ]
    return pairs


@dataclass
class PairBatch:
    """B pairs of T-frame windows. `speech` is e2v(j) - e2v(i); `ref` is the reference the connector
    sees (the previous window's change i->j, or zeros at a clip's start and for part of the batch)."""

    ref: torch.Tensor  # (B,T,exp): exp is the backbone's expression width
    speech: torch.Tensor  # (B,1,D)
    exp_i: torch.Tensor  # (B,T,exp)
    exp_j: torch.Tensor  # (B,T,exp)
    emotion_i: list[str]
    emotion_j: list[str]

    def to(self, device: torch.device | str) -> PairBatch:
        return PairBatch(
            self.ref.to(device),
            self.speech.to(device),
            self.exp_i.to(device),
            self.exp_j.to(device),
            self.emotion_i,
            self.emotion_j,
        )

    @property
    def size(self) -> int:
        return self.exp_i.shape[0]


class PairSource(Protocol):
    """What the trainer reads: deterministic training batches and fixed evaluation batches."""

    fingerprint: str

    def train_batch(self, step: int, size: int) -> PairBatch: ...

    def reference_batch(self, size: int) -> PairBatch:
        """Plain training pairs (no augmentation), for evaluation centroids."""

    def eval_batches(self, pairs: int) -> dict[str, PairBatch]:
        """Named evaluation sets (at least `held_out`), the same at every call."""


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator for one step's draws: a function of (seed, step) only."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))


def fingerprint(items: Iterable[str]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(item.encode("utf-8") + b"\n")
    return h.hexdigest()


@dataclass
class _Features:
    exp: np.ndarray  # (frames,exp)
    e2v: np.ndarray  # (D,)


class ClipPairs:
    """Pairs of a real layout, with their features loaded once (they are small: 10 or 30 floats a frame)."""

    def __init__(
        self,
        clips: list[Clip],
        *,
        seed: int,
        window: int,
        held_out_speakers: Iterable[str] = (),
        emotions: Iterable[str] | None = None,
        teacher_forcing: float = 0.5,
        width: int | None = None,
    ) -> None:
        """`width`: the expression width the features must have (the backbone's); None: any."""
        self.width = width
        allowed = set(emotions) if emotions is not None else None
        usable = [c for c in clips if c.has_features and (allowed is None or c.emotion in allowed)]
        self.clips = usable
        self.window, self.seed, self.teacher_forcing = window, seed, teacher_forcing
        self.features = [self._load(c) for c in usable]
        long_enough = {k for k, f in enumerate(self.features) if f.exp.shape[0] >= window}
        held = set(held_out_speakers)
        pairs = [p for p in make_pairs(usable) if p.i in long_enough and p.j in long_enough]
        self.train_pairs = [p for p in pairs if usable[p.i].speaker not in held]
        self.eval_pairs = [p for p in pairs if usable[p.i].speaker in held]
        if not self.train_pairs:
            raise ValueError(
                f"no training pairs: {len(usable)} of {len(clips)} clips have both features "
                "(run `cmet-train prep-visual` and `prep-speech`), and a pair needs one speaker and sentence in two "
                "emotions"
            )
        if not self.eval_pairs:
            raise ValueError("no evaluation pairs: name held-out speakers in data.held_out_speakers")
        self.fingerprint = fingerprint(
            f"{c.speaker}|{c.sentence}|{c.emotion}|{c.level}|"
            f"{hashlib.sha256(f.exp.tobytes() + f.e2v.tobytes()).hexdigest()}"
            for c, f in zip(usable, self.features, strict=True)
        )

    def _load(self, clip: Clip) -> _Features:
        exp = np.load(clip.exp_path).astype(np.float32)
        e2v = np.load(clip.e2v_path).astype(np.float32).reshape(-1)
        if exp.ndim != 2:
            raise ValueError(f"{clip.exp_path} holds an array of shape {exp.shape}, not frames x coefficients")
        if self.width is not None and exp.shape[1] != self.width:
            raise ValueError(
                f"{clip.exp_path} holds {exp.shape[1]} coefficients a frame, the backbone's are {self.width}"
            )
        return _Features(exp, e2v)

    def _batch(self, pairs: list[Pair], g: torch.Generator) -> PairBatch:
        t = self.window
        refs, speech, exp_i, exp_j = [], [], [], []
        for pair in pairs:
            a, b = self.features[pair.i], self.features[pair.j]
            pos = float(torch.rand((), generator=g))
            si = round(pos * (a.exp.shape[0] - t))
            sj = round(pos * (b.exp.shape[0] - t))
            wi, wj = a.exp[si : si + t], b.exp[sj : sj + t]
            ref = np.zeros_like(wi)
            if si >= t and sj >= t and float(torch.rand((), generator=g)) < self.teacher_forcing:
                ref = b.exp[sj - t : sj] - a.exp[si - t : si]
            refs.append(ref)
            exp_i.append(wi)
            exp_j.append(wj)
            speech.append(b.e2v - a.e2v)
        return PairBatch(
            torch.from_numpy(np.stack(refs)),
            torch.from_numpy(np.stack(speech))[:, None],
            torch.from_numpy(np.stack(exp_i)),
            torch.from_numpy(np.stack(exp_j)),
            [self.clips[p.i].emotion for p in pairs],
            [self.clips[p.j].emotion for p in pairs],
        )

    def _sample(self, pairs: list[Pair], step: int, size: int) -> PairBatch:
        """`size` pairs drawn with the generator of `step` (negative steps: the fixed evaluation draws)."""
        g = step_generator(self.seed, step)
        idx = torch.randint(0, len(pairs), (size,), generator=g).tolist()
        return self._batch([pairs[k] for k in idx], g)

    def train_batch(self, step: int, size: int) -> PairBatch:
        return self._sample(self.train_pairs, step, size)

    def reference_batch(self, size: int) -> PairBatch:
        return self._sample(self.train_pairs, -2, size)

    def eval_batches(self, pairs: int) -> dict[str, PairBatch]:
        return {"held_out": self._sample(self.eval_pairs, -1, pairs)}
