"""A window of a clip, cut out losslessly with its audio: what a clip preview edits instead of the whole input.

The edit pipeline then runs on the cut unchanged (three passes, paste-back, audio), so a preview is made
exactly as the full edit is. The cut holds lossless RGB H.264 and PCM audio in a QuickTime file: the
preview's output is encoded once, like an edit's, and its audio is not AAC-encoded twice. Video
timestamps keep the input's time base, shifted so the window starts at 0; the audio is cut on the same
clock, sample-exactly, from the window's first frame.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.video import MediaError, VideoInfo, read_frames, video_stream
from cmet_core.options import EditChoices, Limits, probe_input

LOSSLESS: dict[str, object] = {"qp": "0", "preset": "ultrafast"}
"""libx264rgb at qp 0: the cut holds the input's decoded pixels exactly."""


@dataclass(frozen=True)
class Window:
    """The frames [first, first + frames) of the input, starting at `start_s` on the input's clock."""

    path: Path
    first: int
    frames: int
    start_s: float
    duration_s: float


def cut(src: Path, dst: Path, info: VideoInfo, start_s: float, length_s: float) -> Window:
    """The frames whose time lies in [start_s, start_s + length_s) (seconds from the first frame) as a
    lossless clip at `dst`, with the input's audio over the same span."""
    first, kept, t0 = -1, 0, None
    start_time, end_time = 0.0, 0.0
    period = 1 / float(info.fps)
    with av.open(str(dst), mode="w", format="mov") as out:
        video = video_stream(out, "libx264rgb", info, (info.width, info.height), "rgb24", LOSSLESS)
        audio = _audio_stream(src, out) if info.has_audio else None
        for frame in read_frames(src):
            t0 = frame.time_s if t0 is None else t0
            offset = frame.time_s - t0
            if offset < start_s - 1e-6:
                continue
            if offset >= start_s + length_s - 1e-6:
                break
            if kept == 0:
                first, start_time = frame.index, frame.time_s
            _write_video(out, video, frame.image, round((frame.time_s - start_time) / info.time_base), info)
            kept += 1
            end_time = frame.time_s + period
        if kept == 0:
            raise InputError(
                ErrorCode.BAD_PREVIEW_WINDOW,
                f"no frame lies in the preview window {start_s:g}-{start_s + length_s:g} s "
                f"(the clip is {info.duration_s:.2f} s long)",
            )
        out.mux(video.encode(None))
        if audio is not None:
            _copy_audio(src, out, audio, start_time, end_time)
    return Window(dst, first, kept, start_time - (t0 or 0.0), end_time - start_time)


def _write_video(
    out: av.container.OutputContainer, stream: av.VideoStream, image: np.ndarray, pts: int, info: VideoInfo
) -> None:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    frame.pts, frame.time_base = pts, info.time_base
    out.mux(stream.encode(frame))


def _audio_stream(src: Path, out: av.container.OutputContainer) -> av.AudioStream:
    with av.open(str(src)) as container:
        stream = container.streams.audio[0]
        rate = stream.rate or 48000
        layout = stream.layout.name if stream.layout and stream.channels <= 2 else "stereo"
    return out.add_stream("pcm_s16le", rate=rate, layout=layout)


def _copy_audio(
    src: Path, out: av.container.OutputContainer, audio: av.AudioStream, start_s: float, end_s: float
) -> None:
    """The input's first audio track between two times of its clock, as 16-bit PCM starting at 0; decoding
    stops past the window."""
    rate, layout = audio.rate, audio.layout.name
    channels = audio.layout.nb_channels
    resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
    kept: list[np.ndarray] = []
    a = b = pos = 0
    first_time: float | None = None
    with av.open(str(src)) as container:
        try:
            for decoded in container.decode(container.streams.audio[0]):
                if first_time is None:
                    first_time = float(decoded.time or 0.0)
                    a = max(0, round((start_s - first_time) * rate))
                    b = max(a, round((end_s - first_time) * rate))
                for chunk in resampler.resample(decoded):
                    samples = chunk.to_ndarray().reshape(-1, channels)
                    lo, hi = max(a - pos, 0), min(b - pos, len(samples))
                    if lo < hi:
                        kept.append(samples[lo:hi])
                    pos += len(samples)
                if pos >= b:
                    break
        except av.error.FFmpegError as exc:
            raise MediaError(ErrorCode.DECODE_FAILED, f"{src}: audio decoding failed ({exc})") from None
    if not kept:
        return
    window = np.concatenate(kept)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(window.reshape(1, -1)), format="s16", layout=layout)
    frame.sample_rate, frame.pts = rate, 0
    for packet in audio.encode(frame):
        out.mux(packet)
    for packet in audio.encode(None):
        out.mux(packet)


@dataclass(frozen=True)
class Windowed:
    """What an edit runs on: the input itself, or a preview window's cut with the options mapped onto it."""

    src: Path
    options: EditChoices
    first: int = 0
    """Index in the input of the first frame of `src`."""
    start_s: float = 0.0
    """Where `src` starts on the input's clock (seconds from its first frame)."""
    duration_s: float | None = None
    """The window's length; None: the whole input."""


@contextmanager
def clip_window(src: Path, options: EditChoices, limits: Limits, scratch: Path) -> Iterator[Windowed]:
    """The input itself without `preview_s`; else its window, cut into a folder under `scratch` for as
    long as the context lasts. An explicit `source_frame` must lie inside the window."""
    if options.preview_s is None:
        yield Windowed(src, options)
        return
    info = probe_input(src, options, limits)
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cmet-window-", dir=scratch) as folder:
        window = cut(src, Path(folder) / "window.mov", info, options.preview_start_s, options.preview_s)
        source = options.source_frame
        if source is not None:
            last = window.first + window.frames - 1
            if not window.first <= source <= last:
                raise InputError(
                    ErrorCode.BAD_PREVIEW_WINDOW,
                    f"source frame {source} is outside the preview window (frames {window.first}-{last})",
                )
            source -= window.first
        mapped = options.model_copy(update={"preview_s": None, "preview_start_s": 0.0, "source_frame": source})
        yield Windowed(window.path, mapped, window.first, window.start_s, window.duration_s)
