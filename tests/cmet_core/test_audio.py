"""Audio loading: real fixtures of every odd kind, generated sample formats and containers, clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr

from cmet_core.media.audio import AudioDecodeError, load_audio
from tests.media_factory import make_video


def _reference(path: Path, target_sr: int = 16000) -> np.ndarray:
    """What load_audio must give for a file libsndfile reads: channel mean, then soxr."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1, dtype=np.float64).astype(np.float32)
    return mono if sr == target_sr else soxr.resample(mono, sr, target_sr)


def _first(test_data: Path, pattern: str) -> Path:
    found = sorted(test_data.glob(pattern))
    if not found:
        pytest.skip(f"no fixture matches {test_data / pattern}")
    return found[0]


# ----------------------------------------------------------------------------------------------
# Real fixtures


@pytest.mark.parametrize(
    ("pattern", "channels", "rate"),
    [
        ("speech/MELD/sarcastic/*.wav", 6, 48000),  # WAVE_FORMAT_EXTENSIBLE, Python's wave cannot read it
        ("speech/gemini/*/*.wav", 1, 24000),
        ("speech/MEAD/*/*.wav", 1, 16000),
    ],
)
def test_real_wavs_match_soundfile_mean_and_soxr(test_data: Path, pattern: str, channels: int, rate: int) -> None:
    path = _first(test_data, pattern)
    info = sf.info(str(path))
    assert (info.channels, info.samplerate) == (channels, rate)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.c_contiguous
    expected = _reference(path)
    assert audio.shape == expected.shape
    np.testing.assert_allclose(audio, expected, atol=1e-6)
    assert abs(len(audio) / 16000 - info.duration) < 0.01


def test_mp3_in_mp4_decodes_like_its_wav(test_data: Path) -> None:
    mp4 = test_data / "video" / "hdtf_RD_Radio1_000_5_cropped.mp4"
    wav = test_data / "video" / "hdtf_RD_Radio1_000_5.wav"
    if not (mp4.is_file() and wav.is_file()):
        pytest.skip(f"{mp4} or {wav} missing")
    with av.open(str(mp4)) as c:
        stream = c.streams.audio[0]
        assert (stream.codec_context.name, stream.rate, stream.channels) == ("mp3float", 44100, 2)
    audio = load_audio(mp4)
    reference = load_audio(wav)  # 48 kHz stereo original of the same track
    assert abs(len(audio) - len(reference)) < 0.05 * 16000
    n = min(len(audio), len(reference))
    assert np.corrcoef(audio[:n], reference[:n])[0, 1] > 0.5  # lossy, but the same signal in time


def test_target_rate_and_max_seconds(test_data: Path) -> None:
    path = _first(test_data, "speech/gemini/*/*.wav")
    full = load_audio(path, target_sr=24000)
    np.testing.assert_array_equal(full, _reference(path, 24000))  # native rate: no resampling at all
    head = load_audio(path, target_sr=8000, max_seconds=1.5)
    assert len(head) == 12000
    np.testing.assert_allclose(head, load_audio(path, target_sr=8000)[:12000], atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Generated inputs: every sample format, containers, file objects


def _tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_wav_sample_format(tmp_path: Path, subtype: str) -> None:
    path = tmp_path / f"{subtype}.wav"
    sf.write(str(path), _tone(8000, 0.5, 3), 8000, subtype=subtype)
    np.testing.assert_allclose(load_audio(path), _reference(path), atol=1e-5)


def test_flac_and_aac(tmp_path: Path) -> None:
    flac = tmp_path / "a.flac"
    sf.write(str(flac), _tone(44100, 1.0, 2), 44100, subtype="PCM_16")
    np.testing.assert_allclose(load_audio(flac), _reference(flac), atol=1e-6)

    m4a = tmp_path / "a.m4a"
    tone = _tone(22050, 1.0, 2)
    with av.open(str(m4a), mode="w") as out:
        stream = out.add_stream("aac", rate=22050, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone.T), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 22050, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    audio = load_audio(m4a)
    assert abs(len(audio) - 16000) < 0.1 * 16000
    expected_rms = np.sqrt(np.mean(soxr.resample(tone.mean(axis=1), 22050, 16000) ** 2))
    assert abs(np.sqrt(np.mean(audio**2)) - expected_rms) < 0.1 * expected_rms


def test_audio_track_of_a_generated_video(tmp_path: Path) -> None:
    path = make_video(tmp_path / "v.mp4", frames=25, audio=True)
    audio = load_audio(path)
    assert abs(len(audio) - 16000) < 0.1 * 16000 and 0.1 < np.abs(audio).max() < 0.3


def test_bytes_and_file_objects(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(str(path), _tone(24000, 0.3, 2), 24000)
    expected = load_audio(path)
    np.testing.assert_array_equal(load_audio(path.read_bytes()), expected)
    np.testing.assert_array_equal(load_audio(io.BytesIO(path.read_bytes())), expected)
    with path.open("rb") as f:
        np.testing.assert_array_equal(load_audio(f), expected)
    np.testing.assert_array_equal(load_audio(str(path)), expected)


# ----------------------------------------------------------------------------------------------
# Errors: AudioDecodeError (a ValueError) naming the file


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioDecodeError, match=f"{path}: no such file") as err:
        load_audio(path)
    assert err.value.code == "not_found" and isinstance(err.value, ValueError)


def test_not_a_media_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are words, not sound\n" * 20)
    with pytest.raises(AudioDecodeError, match=f"{path}: not a media file") as err:
        load_audio(path)
    assert err.value.code == "not_media"
    with pytest.raises(AudioDecodeError, match="<11 bytes in memory>: not a media file"):
        load_audio(b"\x00\x01garbage!!")


def test_no_audio_stream(tmp_path: Path) -> None:
    path = make_video(tmp_path / "silent.mp4", frames=3, audio=False)
    with pytest.raises(AudioDecodeError, match=rf"{path}: has no audio stream \(streams: video\)") as err:
        load_audio(path)
    assert err.value.code == "no_audio"


def test_zero_samples(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros((0, 2), np.float32), 16000)
    with pytest.raises(AudioDecodeError, match=f"{path}: the audio stream holds no samples") as err:
        load_audio(path)
    assert err.value.code == "empty_audio"


def test_bad_target_rate(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="target_sr must be positive"):
        load_audio(tmp_path / "x.wav", target_sr=0)
