"""Dataset layouts, emotion pairs and windows, on trees of feature files the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.helpers import tiny_config
from training.data import E2V_DIR, ClipPairs, crema_d_clips, make_pairs, mead_clips
from training.sources import open_source
from training.trainer import Trainer


def _write_clip(
    folder: Path,
    stem: str,
    frames: int,
    rng: np.random.Generator,
    video_suffix: str = ".mp4",
    wav_folder: Path | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}{video_suffix}").write_bytes(b"")  # features are what training reads
    np.save(folder / f"{stem}_ED_exp.npy", rng.normal(size=(frames, 10)).astype(np.float32))
    wav_folder = wav_folder or folder
    wav_folder.mkdir(parents=True, exist_ok=True)
    (wav_folder / f"{stem}.wav").write_bytes(b"")
    (wav_folder / E2V_DIR).mkdir(exist_ok=True)
    np.save(wav_folder / E2V_DIR / f"{stem}.npy", rng.normal(size=1024).astype(np.float32))


def mead_tree(root: Path, speakers: tuple[str, ...] = ("M003", "W009", "W015"), sentences: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for speaker in speakers:
        _write_clip(root / speaker / "front" / "neutral" / "level_1", "001", 40, rng)
        for emotion in ("angry", "happy"):
            for n in range(1, sentences + 1):
                _write_clip(root / speaker / "front" / emotion / "level_3", f"{n:03d}", 30 + n, rng)
    return root


def test_mead_layout_pairs_same_speaker_and_sentence(tmp_path: Path) -> None:
    clips = mead_clips(mead_tree(tmp_path))
    assert len(clips) == 3 * 7 and all(c.has_features for c in clips)
    pairs = make_pairs(clips)
    for p in pairs:
        a, b = clips[p.i], clips[p.j]
        assert (a.speaker, a.sentence) == (b.speaker, b.sentence) and a.emotion != b.emotion
    # per speaker: sentence 001 in neutral, angry, happy (3 pairs); 002 and 003 in angry, happy (1 each)
    assert len(pairs) == 3 * 5


def test_crema_d_names_parse(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ("1001_DFA_ANG_XX", "1001_DFA_NEU_XX", "1001_IEO_HAP_HI", "1002_DFA_SAD_LO"):
        _write_clip(tmp_path / "VideoFlash", name, 20, rng, ".flv", tmp_path / "AudioWAV")
    (tmp_path / "AudioWAV" / "README.wav").write_bytes(b"")  # not a CREMA-D name: ignored
    clips = crema_d_clips(tmp_path)
    assert [(c.speaker, c.sentence, c.emotion, c.level) for c in clips] == [
        ("1001", "DFA", "angry", "XX"),
        ("1001", "DFA", "neutral", "XX"),
        ("1001", "IEO", "happy", "HI"),
        ("1002", "DFA", "sad", "LO"),
    ]
    assert [(clips[p.i].emotion, clips[p.j].emotion) for p in make_pairs(clips)] == [("angry", "neutral")]


def test_windows_are_a_function_of_seed_and_step_and_speakers_are_held_out(tmp_path: Path) -> None:
    clips = mead_clips(mead_tree(tmp_path))
    source = ClipPairs(clips, seed=3, window=5, held_out_speakers=["W015"])
    assert all(source.clips[p.i].speaker != "W015" for p in source.train_pairs)
    assert source.eval_pairs and all(source.clips[p.i].speaker == "W015" for p in source.eval_pairs)
    a, b = source.train_batch(11, 6), source.train_batch(11, 6)
    assert torch.equal(a.exp_i, b.exp_i) and torch.equal(a.ref, b.ref) and a.exp_i.shape == (6, 5, 10)
    assert not torch.equal(a.exp_i, source.train_batch(12, 6).exp_i)
    before = source.fingerprint
    np.save(clips[0].e2v_path, np.zeros(1024, np.float32))
    assert ClipPairs(mead_clips(tmp_path), seed=3, window=5, held_out_speakers=["W015"]).fingerprint != before


def test_missing_features_and_no_held_out_speakers_say_what_to_do(tmp_path: Path) -> None:
    root = mead_tree(tmp_path)
    with pytest.raises(ValueError, match="held_out_speakers"):
        ClipPairs(mead_clips(root), seed=0, window=5)
    for npy in root.rglob("*_ED_exp.npy"):
        npy.unlink()
    with pytest.raises(ValueError, match="prep-visual"):
        ClipPairs(mead_clips(root), seed=0, window=5, held_out_speakers=["W015"])


def test_training_runs_on_the_mead_layout(tmp_path: Path) -> None:
    root = mead_tree(tmp_path / "MEAD")
    cfg = tiny_config(
        data={"layout": "mead", "root": str(root), "held_out_speakers": ["W015"]},
        schedule={"steps": 4, "warmup_steps": 0},
        eval={"every": 4, "pairs": 8},
    )
    result = Trainer(cfg, open_source(cfg), tmp_path / "run").train()
    assert result.step == 4 and {"held_out/recon_l1", "held_out/direction_cos", "held_out/centroid_acc"} <= set(
        result.metrics
    )
