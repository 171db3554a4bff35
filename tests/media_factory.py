"""Generates small real media files for tests (PyAV), so odd inputs need no committed fixtures."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_video(
    path: Path,
    frames: int = 10,
    size: tuple[int, int] = (64, 48),
    fps: int = 25,
    audio: bool = True,
    rotation: int = 0,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """A clip whose frame i has a left-to-right gradient plus a bright square at column i (motion to check)."""
    w, h = size
    with av.open(str(path), mode="w") as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
            img[: h // 4, (i * 3) % max(w - 4, 1) : (i * 3) % max(w - 4, 1) + 4] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        if a is not None:
            samples = int(16000 * frames / fps)
            t = np.arange(samples) / 16000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            af.sample_rate = 16000
            af.pts = 0
            for p in a.encode(af):
                out.mux(p)
            for p in a.encode(None):
                out.mux(p)
    return path
