"""Synthetic clips: the embedded default input of `cmet edit`, and generated test media.

No real face video can ship with the project, so the default input is drawn: a 256x256 face
crop (it passes straight to the model, no detector involved) whose mouth opens and closes in
time with a voice-like tone. It shows the whole pipeline running; it is not a quality demo.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

SAMPLE_RATE = 16000


def write_clip(
    path: Path,
    draw: Callable[[int], np.ndarray],
    frames: int,
    fps: int = 25,
    audio: Callable[[np.ndarray], np.ndarray] | None = None,
    rotation: int = 0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode `draw(i)` (H,W,3 uint8 RGB) for each frame, plus `audio(t)` (mono samples at times t) as AAC."""
    first = draw(0)
    h, w = first.shape[:2]
    with av.open(str(path), mode="w") as out:
        video = cast(av.VideoStream, out.add_stream(codec, rate=fps))  # `codec` names a video encoder
        video.width, video.height, video.pix_fmt = w, h, pix_fmt
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio is not None else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(first if i == 0 else draw(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None and audio is not None:
            t = np.arange(int(SAMPLE_RATE * frames / fps)) / SAMPLE_RATE
            chunk = av.AudioFrame.from_ndarray(audio(t).astype(np.float32)[None, :], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, 0
            out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))
    return path


def _mouth_opening(t: np.ndarray) -> np.ndarray:
    """Syllable-like envelope, about four syllables a second."""
    envelope: np.ndarray = np.clip(np.sin(2 * np.pi * 2.1 * t) * np.sin(2 * np.pi * 0.7 * t + 0.5), 0, 1)
    return envelope


def _face(i: int, fps: int, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.empty((size, size, 3), np.uint8)
    image[...] = (70, 90, 120)
    nod = 0.01 * np.sin(2 * np.pi * 0.5 * i / fps)
    head = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5 - nod) / 0.4) ** 2 < 1
    image[head] = (224, 180, 150)
    for ex in (0.38, 0.62):
        image[((xx - ex) / 0.05) ** 2 + ((yy - 0.42 - nod) / 0.025) ** 2 < 1] = (40, 30, 30)
    opening = 0.01 + 0.05 * float(_mouth_opening(np.array([i / fps]))[0])
    image[((xx - 0.5) / 0.1) ** 2 + ((yy - 0.68 - nod) / opening) ** 2 < 1] = (120, 40, 50)
    return image


def _voice(t: np.ndarray) -> np.ndarray:
    pitch = 140 + 20 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 6))
    return 0.15 * _mouth_opening(t) * harmonics


def write_sample_clip(path: Path, seconds: float = 2.0, fps: int = 25, size: int = 256) -> Path:
    """The embedded default input: a drawn talking face crop with a voice-like track."""
    return write_clip(Path(path), lambda i: _face(i, fps, size), max(1, round(seconds * fps)), fps, audio=_voice)
