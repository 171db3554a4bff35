"""Feature preparation on real clips (symlinked into a MEAD-style tree, never copied) with the tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from training.data import mead_clips
from training.prep import prep_speech, prep_visual


def _tree(root: Path, test_data: Path) -> Path:
    video = test_data / "video"
    for emotion, clip, stem in (("angry", "mead_W009_038", "038"), ("neutral", "hdtf_RD_Radio1_000_5", "038")):
        folder = root / "W009" / "front" / emotion / ("level_3" if emotion != "neutral" else "level_1")
        folder.mkdir(parents=True)
        os.symlink(video / f"{clip}_cropped.mp4", folder / f"{stem}.mp4")
        os.symlink(video / f"{clip}.wav", folder / f"{stem}.wav")
    return root


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_prep_writes_features_beside_the_clips_and_resumes(test_data: Path, tiny_set: Path, tmp_path: Path) -> None:
    root = _tree(tmp_path / "MEAD", test_data)
    visual = prep_visual(root, "mead", tiny_set, batch=32, device="cpu")
    assert (visual.written, visual.skipped, visual.failed) == (2, 0, [])
    speech = prep_speech(root, "mead", tiny_set, batch=2, device="cpu")
    assert (speech.written, speech.skipped, speech.failed) == (2, 0, [])
    for clip in mead_clips(root):
        exp = np.load(clip.exp_path)
        assert exp.shape == (_frames(clip.video), 10) and np.isfinite(exp).all()  # every frame, 25 fps or not
        assert np.load(clip.e2v_path).shape == (1024,)
    again = prep_visual(root, "mead", tiny_set, device="cpu")
    assert (again.written, again.skipped) == (0, 2)
    assert prep_speech(root, "mead", tiny_set, device="cpu").skipped == 2
    assert not list(root.rglob("*.partial*"))


def test_a_bad_clip_is_reported_and_the_rest_prepared(test_data: Path, tiny_set: Path, tmp_path: Path) -> None:
    root = _tree(tmp_path / "MEAD", test_data)
    bad = root / "W009" / "front" / "angry" / "level_3" / "039.mp4"
    bad.write_bytes(b"this is not a video")
    (bad.with_suffix(".wav")).write_bytes(b"nor is this a wav")
    visual = prep_visual(root, "mead", tiny_set, device="cpu")
    assert visual.written == 2 and len(visual.failed) == 1 and "039.mp4" in visual.failed[0]
    speech = prep_speech(root, "mead", tiny_set, batch=8, device="cpu")
    assert speech.written == 2 and len(speech.failed) == 1 and "039.wav" in speech.failed[0]
