"""Audio in: the first audio stream of any container PyAV reads, as mono float32 at one sample rate.

Decoding goes through PyAV (so wav with any channel layout, including 6-channel
WAVE_FORMAT_EXTENSIBLE, mp3 inside mp4, aac, flac... all work), channels are averaged frame by
frame (memory stays one mono copy), and resampling is done by soxr, which measured about three
times faster than PyAV's resampler at equal quality.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, BinaryIO

import av
import numpy as np
import soxr

from cmet_core.errors import ErrorCode
from cmet_core.media.video import MediaError

AudioSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO

# Integer sample formats as ffmpeg names them (planar variants end in "p"): offset and full scale.
_INT_SCALE: dict[str, tuple[float, float]] = {
    "u8": (128.0, 128.0),
    "s16": (0.0, 32768.0),
    "s32": (0.0, 2147483648.0),
    "s64": (0.0, 9223372036854775808.0),
}


class AudioDecodeError(MediaError):
    """Audio a user sent that cannot be used; the message names the file, `code` says why for machines.

    Codes: `not_found`, `not_media`, `no_audio`, `decode_failed`, `empty_audio`.
    """


def _describe(source: AudioSource) -> str:
    """How error messages name the input: its path, a file object's name, or what it is."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else f"<{type(source).__name__} stream>"


def open_audio(source: AudioSource, name: str) -> av.container.InputContainer:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise AudioDecodeError(ErrorCode.NOT_FOUND, f"{name}: no such file")
        target: str | BinaryIO = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        target = io.BytesIO(bytes(source))
    else:
        target = source
    try:
        return av.open(target, mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, EOFError) as exc:
        raise AudioDecodeError(ErrorCode.NOT_MEDIA, f"{name}: not a media file PyAV can read ({exc})") from None


def frame_channels(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as (channels, samples) in [-1, 1], converted from its sample format, not mixed:
    float32, except 64-bit integers (float64)."""
    fmt = frame.format.name
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T  # packed: (1, samples*channels) interleaved
    base = fmt[:-1] if fmt.endswith("p") else fmt
    if base in _INT_SCALE:
        offset, scale = _INT_SCALE[base]
        work: type[np.floating[Any]] = np.float64 if base == "s64" else np.float32
        samples: np.ndarray = (data.astype(work) - offset) / scale
        return samples
    return data


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """One decoded frame as mono float32 in [-1, 1]: converted from its sample format, channels averaged."""
    samples = frame_channels(frame)
    mono: np.ndarray = (
        samples.mean(axis=0, dtype=np.float64).astype(np.float32)
        if samples.shape[0] > 1
        else samples[0].astype(np.float32)
    )
    return mono


def load_audio(source: AudioSource, target_sr: int = 16000, *, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream of `source` (path, bytes or binary file object) to mono float32 at `target_sr`.

    `max_seconds` stops decoding once that much audio is read, so a long upload costs no more
    than the part that will be used. Raises `AudioDecodeError` (a `ValueError`) naming the file when
    it is missing, not media, has no audio stream, fails to decode or holds no samples.
    """
    if target_sr <= 0:
        raise ValueError(f"target_sr must be positive, got {target_sr}")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    name = _describe(source)
    # Runs of frames at one rate; a stream that changes rate midway is resampled run by run.
    runs: list[tuple[int, list[np.ndarray]]] = []
    read_s = 0.0
    with open_audio(source, name) as container:
        if not container.streams.audio:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise AudioDecodeError(ErrorCode.NO_AUDIO, f"{name}: has no audio stream (streams: {kinds})")
        stream = container.streams.audio[0]
        try:
            for frame in container.decode(stream):
                if not frame.samples:
                    continue
                rate = int(frame.sample_rate)
                if not runs or runs[-1][0] != rate:
                    runs.append((rate, []))
                runs[-1][1].append(_frame_to_mono(frame))
                read_s += frame.samples / rate
                if max_seconds is not None and read_s >= max_seconds:
                    break
        except av.error.FFmpegError as exc:
            raise AudioDecodeError(
                ErrorCode.DECODE_FAILED, f"{name}: the audio stream does not decode ({exc})"
            ) from None
    pieces = []
    for rate, chunks in runs:
        mono = np.concatenate(chunks)
        pieces.append(
            mono if rate == target_sr else soxr.resample(mono, rate, target_sr).astype(np.float32, copy=False)
        )
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    if max_seconds is not None:
        audio = audio[: int(round(max_seconds * target_sr))]
    if audio.size == 0:
        raise AudioDecodeError(ErrorCode.EMPTY_AUDIO, f"{name}: the audio stream holds no samples")
    return np.ascontiguousarray(audio, dtype=np.float32)
