"""Generates small real media files for tests (PyAV), so odd inputs need no committed fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from cmet_core.media.sample import TWO_TALKERS, write_clip, write_turns


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


def make_dense_video(path: Path, frames: int, seconds: float, size: tuple[int, int] = (64, 64)) -> Path:
    """A small file with very many frames: one H.264 key frame, then one tiny all-skip frame muxed
    `frames - 1` times, all within `seconds` (tens of thousands of frames in well under 1 MB and 1 s)."""
    from fractions import Fraction

    import av

    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"g": str(frames + 1), "bf": "0"}
        stream.time_base = Fraction(1, 1_000_000)
        gray = np.full((h, w, 3), 128, np.uint8)
        encoded = []
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(gray, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            encoded += list(stream.encode(frame))
        encoded += list(stream.encode(None))
        key, skip = bytes(encoded[0]), bytes(encoded[1])
        step = Fraction(seconds) / frames / stream.time_base
        for i in range(frames):
            packet = av.Packet(key if i == 0 else skip)
            packet.stream, packet.time_base = stream, stream.time_base
            packet.pts = packet.dts = int(i * step)
            packet.duration = max(1, int(step))
            packet.is_keyframe = i == 0
            out.mux(packet)
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


def make_speech(path: Path, wav_16k: np.ndarray, rate: int = 44100, codec: str = "mp3", stereo: bool = True) -> Path:
    """A speech track from 16 kHz mono samples: resampled to `rate`, `codec` in the container `path` names,
    stereo with the right channel at half level (so a channel mix is visible)."""
    import av
    import soxr

    y = soxr.resample(np.asarray(wav_16k, np.float32), 16000, rate).astype(np.float32) if rate != 16000 else wav_16k
    layout = "stereo" if stereo else "mono"
    planes = np.stack([y, 0.5 * y] if stereo else [y]).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = cast("av.AudioStream", out.add_stream(codec, rate=rate, layout=layout))  # an audio encoder
        fmt = stream.codec_context.codec.audio_formats[0].name if stream.codec_context.codec.audio_formats else "fltp"
        frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        for part in resampler.resample(frame) + resampler.resample(None):
            out.mux(stream.encode(part))
        out.mux(stream.encode(None))
    return path


def retime(src: Path, path: Path, times: list[float]) -> Path:
    """The first `len(times)` frames of `src` re-encoded at `times` (seconds), its audio stream-copied.

    Uneven times make a variable-frame-rate clip; frames at the real rate with the last one held longer are
    a clip trimmed by stream copy, whose declared average rate (frames / duration) is below the real rate.
    No B-frames, as in most phone and screen recordings."""
    from fractions import Fraction

    import av

    from cmet_core.media.video import read_frames

    tb = Fraction(1, 12800)
    with av.open(str(src)) as source, av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.pix_fmt, video.options = "yuv420p", {"bf": "0"}
        video.time_base = video.codec_context.time_base = tb
        audio = out.add_stream_from_template(source.streams.audio[0]) if source.streams.audio else None
        images = [decoded.image for decoded, _ in zip(read_frames(src), times, strict=False)]
        video.height, video.width = images[0].shape[:2]
        for image, at in zip(images, times, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(at / tb), tb
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if audio is not None:
            for packet in source.demux(source.streams.audio[0]):
                if packet.dts is not None:
                    packet.stream = audio
                    out.mux(packet)
    return path


def make_size_change(path: Path, first: np.ndarray, then: tuple[int, int], frames: int) -> Path:
    """A Matroska MJPEG clip whose frame 0 is the image `first` and whose other `frames - 1` frames are grey
    `then` (width, height): each JPEG packet carries its own size, as an H.264 stream may in a new SPS."""
    from fractions import Fraction

    import av

    def jpeg(image: np.ndarray) -> bytes:
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.height, encoder.width = image.shape[:2]
        encoder.pix_fmt, encoder.time_base = "yuvj420p", Fraction(1, 25)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format="yuvj420p")
        return bytes(encoder.encode(frame)[0])

    packets = [jpeg(first), jpeg(np.full((then[1], then[0], 3), 128, np.uint8))]
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuvj420p"
        for i in range(frames):
            packet = av.Packet(packets[min(i, 1)])
            packet.stream, packet.time_base = stream, Fraction(1, 25)
            packet.pts = packet.dts = i
            packet.duration, packet.is_keyframe = 1, True
            out.mux(packet)
    return path


def make_two_face_clip(test_data: Path, path: Path, turn_s: float = 2.0, turns: int = 2) -> Path:
    """Two fixture talkers side by side, taking turns (`write_turns`): the left one speaks first."""
    videos = test_data / "video"
    talkers = [(videos / f"{name}_cropped.mp4", videos / f"{name}.wav") for name in TWO_TALKERS]
    return write_turns(path, talkers, turn_s, turns)
