"""A dub's speech track: any container PyAV reads, turned into the 16 kHz mono waveform Audio2Lip hears.

The samples are decoded without mixing (PyAV), then `mel.to_speech_rate` averages the channels in
float32 and resamples with soxr HQ, as the original's `librosa.load(path, sr=16000)` does, so a
16-bit wav gives the kit's waveform exactly. No torch: the API checks a track with `check_track`
before a job exists, the edit reads it with `read_track`.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from cmet_core.errors import ErrorCode
from cmet_core.media import mel
from cmet_core.media.audio import AudioDecodeError, frame_channels, open_audio

SILENCE_PEAK = 10 ** (-60 / 20)
"""A track whose loudest sample stays under -60 dBFS is silence: Audio2Lip would give a closed mouth throughout."""


def _too_long(name: str, seconds: float, limit_s: float) -> AudioDecodeError:
    return AudioDecodeError(
        ErrorCode.SPEECH_TOO_LONG, f"{name}: the speech track is over the limit of {limit_s:g} s ({seconds:.1f} s)"
    )


def check_track(path: Path, max_seconds: float) -> float:
    """The track's declared duration in seconds (0 when unknown); refuses a file without audio or over the limit."""
    name = str(path)
    with open_audio(path, name) as container:
        if not container.streams.audio:
            raise AudioDecodeError(ErrorCode.NO_AUDIO, f"{name}: the speech track has no audio stream")
        stream = container.streams.audio[0]
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = 0.0
    if seconds > max_seconds:
        raise _too_long(name, seconds, max_seconds)
    return seconds


def read_track(path: Path, max_seconds: float) -> np.ndarray:
    """16 kHz mono float32 samples of the first audio stream; refuses what cannot be dubbed, with its code."""
    name = str(path)
    check_track(path, max_seconds)
    runs: list[tuple[int, list[np.ndarray]]] = []  # (rate, channel count) changes start a new run
    read_s = 0.0
    with open_audio(path, name) as container:
        stream = container.streams.audio[0]
        try:
            for frame in container.decode(stream):
                if not frame.samples:
                    continue
                samples = frame_channels(frame).astype(np.float32, copy=False)
                rate = int(frame.sample_rate)
                if not runs or runs[-1][0] != rate or runs[-1][1][0].shape[0] != samples.shape[0]:
                    runs.append((rate, []))
                runs[-1][1].append(samples)
                read_s += frame.samples / rate
                if read_s > max_seconds:
                    raise _too_long(name, read_s, max_seconds)
        except av.error.FFmpegError as exc:
            raise AudioDecodeError(
                ErrorCode.DECODE_FAILED, f"{name}: the speech track fails to decode ({exc})"
            ) from None
    if not runs:
        raise AudioDecodeError(ErrorCode.EMPTY_AUDIO, f"{name}: the speech track holds no samples")
    wav = np.concatenate([mel.to_speech_rate(np.concatenate(chunks, axis=1), rate) for rate, chunks in runs])
    if wav.shape[0] < mel.SAMPLES_PER_FRAME:
        raise AudioDecodeError(
            ErrorCode.SPEECH_TOO_SHORT, f"{name}: {wav.shape[0] / 16:.0f} ms of speech is under one frame"
        )
    if float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise AudioDecodeError(ErrorCode.SILENT_SPEECH, f"{name}: silent speech track (under -60 dBFS throughout)")
    return wav
