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


def make_many_packets(path: Path, packets: int = 1_000_000, fps: int = 16_000) -> Path:
    """A 16x16 mp4 whose first frame decodes and whose other `packets - 1` are one tiny packet each
    (about 12 bytes a packet): cheap to make, slow to demux (the probe counts every packet)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        frames = [av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24") for _ in range(2)]
        for pts, frame in enumerate(frames):
            frame.pts = pts
        first, repeat = [p for f in [*frames, None] for p in stream.encode(f)][:2]
        out.mux(first)
        data = bytes(repeat)
        for pts in range(1, packets):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.duration = stream, pts, pts, 1
            out.mux(packet)
    return path
