"""Following the voice: windows, neutral reference, smoothing, the segments found, silence.

The real emotion2vec+ features of the shared clips (`e2v/`) stand in for the encoder's output:
the injected window embedding is each window's overlap-weighted mean of the features of the
clips it covers, which is what an utterance encoder gives a window straddling two clips.
"""

from __future__ import annotations

import importlib.util
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cmet_core.emotion.library import load_builtin_library
from cmet_core.emotion.voice import SAMPLE_RATE, Window, follow_voice, speech_windows, voice_timeline
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.audio import load_audio

LIBRARY = load_builtin_library()
PLAN = [("angry", "M003_level_3_005"), ("angry", "M003_level_3_008"), ("neutral", "M003_001")]
PLAN += [("neutral", "M003_002"), ("happy", "M003_level_3_011"), ("happy", "M003_level_3_012")]


@dataclass(frozen=True)
class Piece:
    start_s: float
    end_s: float
    feature: np.ndarray | None  # None: silence


def _track(test_data: Path, plan: Sequence[tuple[str, str | None]]) -> tuple[np.ndarray, list[Piece]]:
    """The clips of `plan` end to end (a None clip name is 3 s of silence), and where each lies."""
    parts, pieces, at = [], [], 0.0
    for emotion, name in plan:
        if name is None:
            audio, feature = np.zeros(3 * SAMPLE_RATE, np.float32), None
        else:
            audio = load_audio(test_data / "speech" / "MEAD" / emotion / f"{name}.wav", SAMPLE_RATE)
            feature = np.load(test_data / "e2v" / "MEAD" / emotion / f"{name}.npy").astype(np.float64)
        parts.append(audio)
        pieces.append(Piece(at, at + len(audio) / SAMPLE_RATE, feature))
        at += len(audio) / SAMPLE_RATE
    return np.concatenate(parts), pieces


def _stand_in(pieces: list[Piece]):  # type: ignore[no-untyped-def]
    def embed(windows: Sequence[Window]) -> np.ndarray:
        rows = []
        for w in windows:
            acc, total = 0.0, 0.0
            for p in pieces:
                overlap = min(w.end_s, p.end_s) - max(w.start_s, p.start_s)
                if overlap > 0 and p.feature is not None:
                    acc, total = acc + overlap * p.feature, total + overlap
            rows.append(acc / total)
        return np.stack(rows)

    return embed


def _write_wav(path: Path, audio: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_windows_cover_the_clip_and_find_silence() -> None:
    audio = np.concatenate([0.3 * np.sin(np.arange(5 * SAMPLE_RATE) / 7.0), np.zeros(4 * SAMPLE_RATE)])
    windows = speech_windows(audio.astype(np.float32))
    assert windows[0].start_s == 0 and windows[-1].end_s == pytest.approx(9.0)
    assert all(b.start_s - a.start_s <= 1.0 for a, b in zip(windows, windows[1:], strict=False))
    assert [w.voiced for w in windows] == [w.start_s < 5.0 for w in windows]
    assert len(speech_windows(np.ones(SAMPLE_RATE // 2, np.float32))) == 1  # shorter than a window


def test_angry_then_neutral_then_happy_gives_those_three_segments(test_data: Path, tmp_path: Path) -> None:
    audio, pieces = _track(test_data, PLAN)
    found = follow_voice(_write_wav(tmp_path / "voice.wav", audio), _stand_in(pieces), LIBRARY)
    assert [s.target for s in found] == ["angry", "neutral", "happy"], found
    angry, neutral, happy = found
    assert angry.start_s == 0 and happy.end_s == pytest.approx(pieces[-1].end_s, abs=0.01)
    assert angry.end_s == neutral.start_s and neutral.end_s == happy.start_s  # they touch: cross-fades
    assert abs(angry.end_s - pieces[2].start_s) <= 1.0 and abs(happy.start_s - pieces[4].start_s) <= 1.0
    assert angry.cosine is not None and angry.cosine > 0.9 and happy.cosine is not None and happy.cosine > 0.9
    assert neutral.cosine is None and 0.7 < angry.intensity < 1.5 and 0.7 < happy.intensity < 1.5
    timeline = voice_timeline(found)
    assert timeline is not None and [s.target for s in timeline.segments] == ["angry", "neutral", "happy"]
    timeline.check(max_segments=3, duration_s=pieces[-1].end_s)


def test_the_speakers_calmest_window_can_be_the_neutral(test_data: Path, tmp_path: Path) -> None:
    audio, pieces = _track(test_data, PLAN)
    found = follow_voice(_write_wav(tmp_path / "voice.wav", audio), _stand_in(pieces), LIBRARY, neutral="self")
    assert [s.target for s in found] == ["angry", "neutral", "happy"]


def test_silence_keeps_the_last_emotion_decaying(test_data: Path, tmp_path: Path) -> None:
    audio, pieces = _track(test_data, [*PLAN[:2], ("angry", None), *PLAN[4:]])
    found = follow_voice(_write_wav(tmp_path / "voice.wav", audio), _stand_in(pieces), LIBRARY, intensity=0.5)
    assert [s.target for s in found] == ["angry", "happy"]
    angry = found[0]
    levels = [k.intensity for k in angry.keyframes]
    assert levels and levels[0] == angry.intensity and all(b < a for a, b in zip(levels, levels[1:], strict=False))
    assert angry.end_s > pieces[1].end_s and angry.end_s <= found[1].start_s
    assert 0.3 < angry.intensity < 0.75  # the user's 0.5 times the voice's own strength


def test_audio_without_speech_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        follow_voice(_write_wav(tmp_path / "quiet.wav", np.zeros(3 * SAMPLE_RATE)), _stand_in([]), LIBRARY)
    assert caught.value.code == ErrorCode.BAD_SPEECH


@pytest.fixture(scope="module")
def talking(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A 10 fps talking-face clip whose audio is angry, neutral and happy speech end to end."""
    from cmet_core.media.sample import write_clip, write_sample_clip
    from cmet_core.media.video import read_frames

    folder = tmp_path_factory.mktemp("voice")
    audio, pieces = _track(test_data, [PLAN[0], PLAN[3], PLAN[4]])
    face = next(iter(read_frames(write_sample_clip(folder / "face.mp4", seconds=0.2)))).image
    frames = int(pieces[-1].end_s * 10)

    def sound(t: np.ndarray) -> np.ndarray:
        return np.pad(audio, (0, max(0, len(t) - len(audio))))[: len(t)]

    return write_clip(folder / "talk.mp4", lambda _i: face, frames, fps=10, audio=sound), pieces[-1].end_s


@pytest.mark.skipif(importlib.util.find_spec("funasr") is None, reason="funasr not installed (cmet[speech])")
def test_an_edit_follows_the_voice_of_its_own_audio(
    tiny_set: Path, talking: tuple[Path, float], tmp_path: Path
) -> None:
    """Through the real funasr path (tiny random emotion2vec): segments found, listed, and applied as listed."""
    from cmet_core.edit.pipeline import Editor
    from cmet_core.emotion.targets import EmotionTarget
    from cmet_core.media.video import probe

    src, seconds = talking
    result = Editor.load(tiny_set).edit(src, tmp_path / "voice.mp4", EmotionTarget(emotion="from_audio"))
    assert result.voice and result.timeline is not None
    assert result.voice[0].start_s == 0 and result.voice[-1].end_s <= seconds + 0.01
    assert all(a.end_s <= b.start_s for a, b in zip(result.voice, result.voice[1:], strict=False))
    # what the job lists is what it applied: resubmitted as a timeline, the same segments
    assert voice_timeline(result.voice) == result.timeline
    assert probe(tmp_path / "voice.mp4").frame_count == int(seconds * 10)
