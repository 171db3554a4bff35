"""Video in/out on real fixtures and generated odd inputs."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from cmet_core.media.video import MediaError, VideoWriter, probe, read_frames
from tests.media_factory import make_video


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
