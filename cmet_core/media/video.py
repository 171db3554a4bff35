"""Video in and out through PyAV: probing, streaming decode (rotation applied), H.264/AAC mp4 out.

Frames stream one at a time so memory does not grow with clip length; the writer copies each
input frame's timestamp, so the output keeps the input's frame count, frame rate (constant or
variable) and duration.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Literal, cast

import av
import numpy as np

from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.yuv import Image, Yuv420
from cmet_core.meter import step

log = logging.getLogger(__name__)

VideoEncoder = Literal["auto", "libx264", "h264_nvenc", "hevc_nvenc", "av1_nvenc"]
"""`auto`: NVENC's H.264 on a CUDA worker whose driver offers it, else libx264; the NVENC HEVC and AV1
encoders only when named."""
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"]
DEFAULT_PRESET: X264Preset = "superfast"
"""Measured by `bench/data_path.py` at 1080p, CRF 18, one thread: `medium` 108 ms of CPU a frame and 52.4 dB
PSNR against the input, `superfast` 31 ms, 52.2 dB, twice the bytes; `veryfast` 41 ms, medium's size, 51.2 dB."""
NVENC_PRESET = "p4"
"""NVENC's middle preset (p1 fastest .. p7 best): its speed is the GPU's, the CPU only feeds it frames."""


@dataclass(frozen=True)
class Encoding:
    """How the output video is encoded: the encoder (resolved, never `auto`), x264's preset, the quality."""

    encoder: str = "libx264"
    preset: X264Preset = DEFAULT_PRESET
    crf: int = 18

    def options(self) -> dict[str, object]:
        """The encoder's options: CRF and preset for libx264, constant quality `cq` for NVENC."""
        if self.encoder == "libx264":
            return {"crf": str(self.crf), "preset": self.preset}
        return {"preset": NVENC_PRESET, "rc": "vbr", "cq": str(self.crf), "b": "0"}


@lru_cache(maxsize=8)
def encoder_opens(name: str) -> bool:
    """Whether this process can open the encoder `name` (NVENC needs a GPU and its driver, not only the codec)."""
    try:
        context = cast(av.VideoCodecContext, av.CodecContext.create(name, "w"))
        context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
        context.time_base = Fraction(1, 25)
        context.open()
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def choose_encoding(encoder: VideoEncoder, preset: X264Preset, crf: int, cuda: bool) -> Encoding:
    """The operator's encoder for this process: `auto` is NVENC's H.264 where the edit runs on CUDA and the
    driver opens it; a named NVENC encoder that does not open falls back to libx264 with one log line."""
    wanted = ("h264_nvenc" if cuda else "libx264") if encoder == "auto" else encoder
    if wanted != "libx264" and not encoder_opens(wanted):
        if encoder != "auto" or cuda:
            log.warning("%s does not open here (no NVIDIA GPU or driver): encoding with libx264", wanted)
        wanted = "libx264"
    return Encoding(wanted, preset, crf)


_codec_threads = 0
"""Threads of each decoder and encoder opened from now on; 0: the codec's own choice (every core)."""


def set_codec_threads(threads: int) -> None:
    """The process's thread policy for codecs (`cmet_core/threads.py`)."""
    global _codec_threads
    _codec_threads = threads


class MediaError(InputError):
    """A user's media file that cannot be edited; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int  # as displayed, rotation applied
    height: int
    fps: Fraction
    time_base: Fraction
    frame_count: int
    duration_s: float
    rotation: int
    video_codec: str
    has_audio: bool

    @property
    def frame_rate(self) -> float:
        """Frames per second to decode: the declared rate, or the packets' own where they are denser
        (a file may declare 25 fps and hold 100,000 frames in 2 s). (n - 1) / duration never
        exceeds the true rate, whether or not the last packet carries its duration."""
        packets = (self.frame_count - 1) / self.duration_s if self.frame_count > 1 and self.duration_s > 0 else 0.0
        return max(float(self.fps), packets)

    @property
    def pixels_per_second(self) -> float:
        return self.width * self.height * self.frame_rate


@dataclass
class DecodedFrame:
    index: int
    pts: int | None
    time_s: float
    image: np.ndarray  # (H, W, 3) uint8 RGB, upright


@dataclass
class PlanesFrame:
    """A decoded frame as the decoder's planes where they can be kept (`yuv.Yuv420`), else upright RGB."""

    index: int
    pts: int | None
    time_s: float
    image: Image


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise MediaError(ErrorCode.NOT_FOUND, f"{path}: no such file")
    try:
        return av.open(str(path), mode="r")
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(ErrorCode.NOT_MEDIA, f"{path}: not a media file PyAV can read ({exc})") from None


def upright(frame: av.VideoFrame, max_side: int | None = None) -> np.ndarray:
    """RGB pixels as displayed: the stream's display-matrix rotation (counter-clockwise degrees) applied;
    `max_side`: scaled down in the same conversion so that neither side is longer (a detector's input)."""
    scale = 1.0 if max_side is None else max_side / max(frame.width, frame.height)
    if scale < 1:
        size = {"width": max(1, round(frame.width * scale)), "height": max(1, round(frame.height * scale))}
        image = frame.reformat(format="rgb24", interpolation="AREA", **size).to_ndarray()
    else:
        image = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _first_frame_geometry(path: Path) -> tuple[int, int, int]:
    """Rotation and upright size come from the first decoded frame (the display matrix is per frame)."""
    with _open(path) as container:
        try:
            first = next(container.decode(video=0), None)
        except av.error.FFmpegError:
            first = None
    if first is None:
        raise MediaError(ErrorCode.DECODE_FAILED, f"{path}: no frame of the video stream decodes")
    rotation = int(first.rotation or 0)
    if round(rotation / 90) % 2:
        return rotation, first.height, first.width
    return rotation, first.width, first.height


def probe(
    path: Path | str,
    max_duration_s: float | None = None,
    max_frames: int | None = None,
    max_pixels_per_second: float | None = None,
) -> VideoInfo:
    """Reads the header and counts frames by demuxing (no decode); refuses what cannot be edited,
    and what is over the limits given: the work of an edit grows with frames and pixels, not seconds."""
    path = Path(path)
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(ErrorCode.NO_VIDEO_STREAM, f"{path}: has no video stream")
        stream = container.streams.video[0]
        count = 0
        first_pts: int | None = None
        last_end = 0
        try:
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                count += 1
                if max_frames is not None and count > max_frames:  # stop demuxing: the rest cannot matter
                    raise MediaError(ErrorCode.TOO_MANY_FRAMES, f"{path}: more than the limit of {max_frames} frames")
                first_pts = packet.pts if first_pts is None else min(first_pts, packet.pts)
                last_end = max(last_end, packet.pts + (packet.duration or 0))
        except av.error.FFmpegError as exc:
            raise MediaError(ErrorCode.DECODE_FAILED, f"{path}: the video stream is corrupt ({exc})") from None
        if count == 0:
            raise MediaError(ErrorCode.ZERO_FRAMES, f"{path}: the video stream has no frames")
        tb = stream.time_base or Fraction(1, 90000)
        fps = stream.average_rate or stream.guessed_rate or Fraction(25)
        duration = float((last_end - (first_pts or 0)) * tb) if last_end else count / float(fps)
        rotation, w, h = _first_frame_geometry(path)
        info = VideoInfo(
            path=path,
            width=w,
            height=h,
            fps=Fraction(fps),
            time_base=Fraction(tb),
            frame_count=count,
            duration_s=duration,
            rotation=rotation,
            video_codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )
    if max_duration_s is not None and info.duration_s > max_duration_s:
        raise MediaError(
            ErrorCode.TOO_LONG, f"{path}: {info.duration_s:.1f} s is longer than the limit of {max_duration_s:g} s"
        )
    if max_pixels_per_second is not None and info.pixels_per_second > max_pixels_per_second:
        raise MediaError(
            ErrorCode.TOO_MANY_PIXELS,
            f"{path}: {info.width}x{info.height} at {info.frame_rate:.4g} frames/s is {info.pixels_per_second:.4g} "
            f"pixels/s, over the limit of {max_pixels_per_second:.4g}",
        )
    return info


def read_frames(
    path: Path | str, wanted: Container[int] | None = None, *, max_side: int | None = None
) -> Iterator[DecodedFrame]:
    """Decodes the first video stream in presentation order, one upright RGB frame at a time; with `wanted`,
    only the frames of those indices are converted and given (a sampler's, which skips the rest cheaply);
    `max_side`: each scaled down so that neither side is longer (the face pass needs no more)."""
    for index, pts, time_s, frame in _decoded(Path(path), rough=max_side is not None):
        if wanted is None or index in wanted:
            yield DecodedFrame(index, pts, time_s, upright(frame, max_side))


def read_planes(path: Path | str) -> Iterator[PlanesFrame]:
    """As `read_frames`, each frame the decoder's planes where `Yuv420` keeps them (no colour conversion)."""
    for index, pts, time_s, frame in _decoded(Path(path)):
        planes = Yuv420.of(frame)
        yield PlanesFrame(index, pts, time_s, planes if planes is not None else upright(frame))


def _decoded(path: Path, rough: bool = False) -> Iterator[tuple[int, int | None, float, av.VideoFrame]]:
    """The first video stream's frames in presentation order: (index, pts, seconds, frame). `rough`: without
    the deblocking filter (a fifth of H.264's decoding), for frames that are scaled down anyway.

    Every frame, given or skipped, has the first frame's size, which `probe` measured and the limits
    accepted: a stream whose size changes (64x64, then 4K) is refused at the first frame that differs,
    before any work is done at a size no limit checked."""
    size: tuple[int, int] | None = None
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = _codec_threads
        if rough:
            stream.codec_context.options = {"skip_loop_filter": "all"}
        tb = stream.time_base or Fraction(1, 90000)
        try:
            for index, frame in enumerate(container.decode(stream)):
                size = size or (frame.width, frame.height)
                if (frame.width, frame.height) != size:
                    raise MediaError(
                        ErrorCode.DECODE_FAILED,
                        f"{path}: frame {index} is {frame.width}x{frame.height}, but the video starts at "
                        f"{size[0]}x{size[1]}; a video whose frame size changes cannot be edited",
                    )
                time_s = float(frame.pts * tb) if frame.pts is not None else index / float(stream.average_rate or 25)
                yield index, frame.pts, time_s, frame
        except av.error.FFmpegError as exc:
            raise MediaError(ErrorCode.DECODE_FAILED, f"{path}: decoding failed ({exc})") from None


def video_stream(
    out: av.container.OutputContainer,
    codec: str,
    like: VideoInfo,
    size: tuple[int, int],
    pix_fmt: str,
    options: Mapping[str, object],
) -> av.VideoStream:
    """An encoder whose stream and codec both count time in the input's time base, so each frame keeps its
    input timestamp exactly. A codec left on 1/declared-rate rounds timestamps onto that grid: where the
    declared (average) rate is below the frames' real rate (a clip trimmed by stream copy, variable frame
    rate), two frames round to one tick and the encoder refuses the second (EINVAL)."""
    stream = cast(av.VideoStream, out.add_stream(codec, rate=like.fps))  # `codec` names a video encoder
    stream.width, stream.height = size
    stream.pix_fmt = pix_fmt
    stream.time_base = like.time_base
    stream.codec_context.time_base = like.time_base
    stream.options = dict(options)
    return stream


class VideoWriter:
    """H.264 (yuv420p; HEVC or AV1 where the operator names NVENC's) + AAC mp4 with faststart; audio is taken
    from `audio_from` and interleaved.

    Odd frame sizes are padded by one edge pixel, because yuv420p needs even dimensions.
    """

    def __init__(
        self, path: Path | str, like: VideoInfo, audio_from: Path | None = None, encoding: Encoding = Encoding()
    ) -> None:
        self.path = Path(path)
        self.container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        size = (like.width + like.width % 2, like.height + like.height % 2)
        self.video = video_stream(self.container, encoding.encoder, like, size, "yuv420p", encoding.options())
        self.video.thread_count = _codec_threads
        self.time_base = like.time_base
        self.frame_period = 1 / like.fps
        self._next_index = 0
        self._audio: _AudioTranscoder | None = None
        if audio_from is not None and like.has_audio:
            self._audio = _AudioTranscoder(Path(audio_from), self.container)

    def write(self, image: Image, pts: int | None = None) -> None:
        """One frame: RGB (converted here) or planes of the stream's size (encoded as they are)."""
        if isinstance(image, Yuv420):
            frame = av.VideoFrame.from_ndarray(image.data, format="yuv420p")
        else:
            frame = self._from_rgb(image)
        frame.pts = pts if pts is not None else round(self._next_index * self.frame_period / self.time_base)
        frame.time_base = self.time_base
        self._next_index += 1
        with step("encode"):
            for packet in self.video.encode(frame):
                self.container.mux(packet)
        if self._audio is not None:
            with step("audio"):
                self._audio.pump(until_s=float(frame.pts * self.time_base) + 1.0)

    def _from_rgb(self, image: np.ndarray) -> av.VideoFrame:
        h, w = image.shape[:2]
        if (w, h) != (self.video.width, self.video.height):
            image = np.pad(image, ((0, self.video.height - h), (0, self.video.width - w), (0, 0)), mode="edge")
        with step("colour"):
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(
                format=self.video.pix_fmt
            )

    def close(self) -> None:
        with step("encode"):
            for packet in self.video.encode(None):
                self.container.mux(packet)
        if self._audio is not None:
            with step("audio"):
                self._audio.pump(until_s=None)
            self._audio.close()
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.container.close()
            self.path.unlink(missing_ok=True)


class _AudioTranscoder:
    """Streams the input's first audio track into AAC, a little ahead of the video, for interleaving."""

    def __init__(self, source: Path, out: av.container.OutputContainer) -> None:
        self.input = av.open(str(source), mode="r")
        in_stream = self.input.streams.audio[0]
        rate = in_stream.rate or 48000
        # by channel count: a wav without a channel mask names its layout "1 channels", which AAC refuses
        layout = {1: "mono", 2: "stereo"}.get(in_stream.channels, "stereo")
        self.stream = out.add_stream("aac", rate=rate, layout=layout)
        self.stream.options = {"b": "160k"} if layout == "stereo" else {"b": "96k"}
        self.out = out
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        self.frames = self.input.decode(in_stream)
        self.done = False

    def pump(self, until_s: float | None) -> None:
        while not self.done:
            try:
                frame = next(self.frames, None)
            except av.error.FFmpegError as exc:
                raise MediaError(ErrorCode.DECODE_FAILED, f"{self.input.name}: audio decoding failed ({exc})") from None
            if frame is None:
                self._encode(self.resampler.resample(None))
                self._mux(self.stream.encode(None))
                self.done = True
                return
            self._encode(self.resampler.resample(frame))
            if until_s is not None and frame.time is not None and frame.time > until_s:
                return

    def _encode(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            self._mux(self.stream.encode(frame))

    def _mux(self, packets: list[av.Packet[av.AudioStream]]) -> None:
        for packet in packets:
            self.out.mux(packet)

    def close(self) -> None:
        self.input.close()
