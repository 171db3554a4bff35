"""Generates small real media files for tests (PyAV), so odd inputs need no committed fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cmet_core.media.sample import write_clip


def _tone(t: np.ndarray) -> np.ndarray:
    return 0.2 * np.sin(2 * np.pi * 440 * t)


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

    def draw(i: int) -> np.ndarray:
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        img[: h // 4, (i * 3) % max(w - 4, 1) : (i * 3) % max(w - 4, 1) + 4] = 255
        return img

    return write_clip(path, draw, frames, fps, _tone if audio else None, rotation, codec, pix_fmt)


def make_audio(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    """A WAV tone: audio only, no video stream."""
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), _tone(t).astype(np.float32), rate)
    return path
