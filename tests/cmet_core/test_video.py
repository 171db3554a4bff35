"""Video in/out on real fixtures and generated odd inputs."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cmet_core.errors import InputError
from cmet_core.media.video import Encoding, MediaError, VideoInfo, VideoWriter, encoder_opens, probe, read_frames
from cmet_core.options import DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS_PER_SECOND, EditChoices, Limits, probe_input
from tests.media_factory import make_dense_video, make_video


def _roundtrip(src: Path, dst: Path) -> None:
    info = probe(src)
    with VideoWriter(dst, info, audio_from=src) as writer:
        for frame in read_frames(src):
            writer.write(frame.image, frame.pts)


@pytest.mark.parametrize(
    "name", ["obama_uncropped.mp4", "edtalk_expression_source_cropped.mp4", "hdtf_RD_Radio1_000_5_cropped.mp4"]
)
def test_real_clips_keep_frames_fps_duration_and_audio(test_data: Path, tmp_path: Path, name: str) -> None:
    src = test_data / "video" / name
    out = tmp_path / "out.mp4"
    _roundtrip(src, out)
    a, b = probe(src), probe(out)
    assert (b.frame_count, b.fps, b.width, b.height, b.has_audio) == (
        a.frame_count,
        a.fps,
        a.width,
        a.height,
        a.has_audio,
    )
    assert abs(b.duration_s - a.duration_s) < 1.0 / float(a.fps)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].format.name == "yuv420p"
        if a.has_audio:
            assert c.streams.audio[0].codec_context.name == "aac"
    head = out.read_bytes()[:4096]
    assert b"moov" in head and (b"mdat" not in head or head.find(b"moov") < head.find(b"mdat"))  # faststart


def test_rotated_stream_is_read_upright(tmp_path: Path) -> None:
    path = make_video(tmp_path / "rot.mp4", frames=3, size=(64, 48), rotation=90)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (48, 64, 90)
    first = next(read_frames(path)).image
    assert first.shape == (64, 48, 3)


@pytest.mark.parametrize("frames", [1, 7])
def test_short_clips_and_no_audio(tmp_path: Path, frames: int) -> None:
    path = make_video(tmp_path / "short.mp4", frames=frames, audio=False)
    info = probe(path)
    assert info.frame_count == frames and not info.has_audio
    out = tmp_path / "out.mp4"
    _roundtrip(path, out)
    assert probe(out).frame_count == frames
    assert len(list(read_frames(out))) == frames


def test_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    path = make_video(tmp_path / "odd.mp4", frames=2, size=(63, 47), codec="libx264", pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    _roundtrip(path, out)
    assert (probe(out).width, probe(out).height) == (64, 48)


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError) as err:
        probe(text)
    assert err.value.code == "not_media" and "notes.mp4" in str(err.value)

    good = make_video(tmp_path / "good.mp4", frames=30)
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    with pytest.raises(MediaError) as err:
        probe(corrupt)
    assert err.value.code in {"not_media", "decode_failed", "zero_frames"}

    audio_only = tmp_path / "audio.m4a"
    with av.open(str(audio_only), mode="w") as out:
        s = out.add_stream("aac", rate=16000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        f.sample_rate = 16000
        for p in [*s.encode(f), *s.encode(None)]:
            out.mux(p)
    with pytest.raises(MediaError) as err:
        probe(audio_only)
    assert err.value.code == "no_video_stream"

    with pytest.raises(MediaError) as err:
        probe(good, max_duration_s=0.5)
    assert err.value.code == "too_long"

    with pytest.raises(MediaError) as err:
        probe(tmp_path / "missing.mp4")
    assert err.value.code == "not_found"


@pytest.mark.parametrize(
    ("frames", "seconds", "code"), [(40_000, 2.0, "too_many_frames"), (35_000, 1.0, "too_many_pixels")]
)
def test_the_work_of_a_clip_is_limited_not_only_its_length(
    tmp_path: Path, frames: int, seconds: float, code: str
) -> None:
    """A 64x64 clip of a few seconds can hold tens of thousands of frames: the default options
    refuse it from the probe (demuxing only), before any frame is decoded."""
    dense = make_dense_video(tmp_path / "dense.mp4", frames=frames, seconds=seconds)
    assert dense.stat().st_size < 1_000_000
    info = probe(dense)  # no limits given: it is a valid clip
    assert (info.width, info.height, info.frame_count) == (64, 64, frames)
    assert info.duration_s == pytest.approx(seconds, rel=0.01)
    with pytest.raises(MediaError) as err:
        probe_input(dense, EditChoices(), Limits())
    assert err.value.code == code


def test_default_limits_pass_ten_minutes_of_1080p_at_60_fps(tmp_path: Path) -> None:
    for last_packet_has_duration in (True, False):  # some containers leave it out: (n - 1) frame times
        frames = 10 * 60 * 60
        duration = (frames if last_packet_has_duration else frames - 1) / 60
        info = VideoInfo(tmp_path, 1920, 1080, Fraction(60), Fraction(1, 60), frames, duration, 0, "h264", True)
        assert info.frame_count <= DEFAULT_MAX_FRAMES
        assert info.pixels_per_second <= DEFAULT_MAX_PIXELS_PER_SECOND
    ntsc = VideoInfo(tmp_path, 1920, 1080, Fraction(60000, 1001), Fraction(1, 60000), 35_964, 600.0, 0, "h264", True)
    assert ntsc.pixels_per_second <= DEFAULT_MAX_PIXELS_PER_SECOND


def test_source_frame_is_checked_against_the_probe(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "ten.mp4", frames=10)
    assert probe_input(clip, EditChoices(source_frame=9), Limits()).frame_count == 10
    with pytest.raises(InputError) as err:
        probe_input(clip, EditChoices(source_frame=10), Limits())
    assert err.value.code == "bad_source_frame" and "frames 0-9" in str(err.value)


def test_the_operator_picks_encoder_and_preset_and_a_missing_nvenc_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """On the CPU `auto` is libx264 without a word; NVENC named (or auto on a CUDA edit) where the driver
    cannot open it falls back to libx264 with one log line. Runs where no NVIDIA driver is: CI."""
    if encoder_opens("h264_nvenc"):
        pytest.skip("this machine opens NVENC: the fallback cannot happen here")
    assert Limits().encoding(cuda=False) == Encoding("libx264", "superfast", 18)
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        chosen = Limits(encoder="hevc_nvenc", preset="veryfast", crf=20).encoding(cuda=True)
    assert chosen == Encoding("libx264", "veryfast", 20)
    assert [r.getMessage() for r in caplog.records] == [
        "hevc_nvenc does not open here (no NVIDIA GPU or driver): encoding with libx264"
    ]
    src = make_video(tmp_path / "in.mp4", frames=5, size=(64, 48))
    out = tmp_path / "out.mp4"
    with VideoWriter(out, probe(src), encoding=chosen) as writer:
        for frame in read_frames(src):
            writer.write(frame.image, frame.pts)
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.name, stream.frames) == ("h264", 5)
