"""The edit pipeline end to end on real and generated media, with the tiny model set.

Tiny models render 32x32 faces from random weights, so these tests check what the pipeline
promises (frames, timing, audio, geometry, paste-back, errors), not how the faces look.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.errors import InputError
from cmet_core.media.sample import write_clip, write_sample_clip
from cmet_core.media.video import probe, read_frames
from cmet_core.options import EditChoices, Limits, probe_input
from tests.media_factory import make_dense_video, make_size_change, make_video

HAPPY = EmotionTarget(emotion="happy")


@pytest.fixture(scope="module")
def editor(tiny_set: Path) -> Editor:
    return Editor.load(tiny_set)


def _frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    out = []
    for frame in read_frames(path):
        out.append(frame.image.astype(np.int16))
        if limit is not None and len(out) == limit:
            break
    return out


def _audio_streams(path: Path) -> int:
    with av.open(str(path)) as c:
        return len(c.streams.audio)


def _same_timing(src: Path, dst: Path) -> None:
    a, b = probe(src), probe(dst)
    assert b.frame_count == a.frame_count
    assert b.fps == a.fps
    assert abs(b.duration_s - a.duration_s) < 1.5 / float(a.fps)


@pytest.fixture(scope="module")
def uncropped(test_data: Path, editor: Editor, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    src = test_data / "video" / "obama_uncropped.mp4"
    dst = tmp_path_factory.mktemp("out") / "obama.happy.mp4"
    stages: list[str] = []
    result = editor.edit(src, dst, HAPPY, progress=lambda stage, _done, _total: stages.append(stage))
    return src, dst, (result, stages)


def test_uncropped_clip_keeps_frames_fps_duration_and_audio(uncropped) -> None:  # type: ignore[no-untyped-def]
    src, dst, (result, stages) = uncropped
    _same_timing(src, dst)
    assert _audio_streams(dst) == 1
    assert result.frames == probe(src).frame_count and not result.face_crop_input
    # the tiny restorer renders no more pixels (32) than the tiny generator: `enhance: auto` leaves it off;
    # the quality report (on by default) is measured last
    assert set(stages) == {"faces", "encode", "expression", "render", "quality"} and stages[-1] == "quality"
    assert set(result.stage_seconds) == {"faces", "encode", "expression", "render", "quality"}
    assert result.quality is not None and result.quality.sampled_frames == 100  # 20 s at 5 a second


def test_uncropped_clip_is_pasted_back_only_around_the_face(uncropped) -> None:  # type: ignore[no-untyped-def]
    src, dst, _ = uncropped
    before, after = _frames(src, 20), _frames(dst, 20)
    assert after[0].shape == before[0].shape == (450, 450, 3)
    diff = np.stack([np.abs(a - b).mean(-1) for a, b in zip(before, after, strict=True)])  # (frames, H, W)
    # the frame's top corners are far from the face: only re-encoding noise there
    assert diff[:, :60, :60].mean() < 2.0 and diff[:, :60, -60:].mean() < 2.0
    # the face itself was replaced by the (random) tiny model's output
    assert diff[:, 150:300, 150:300].mean() > 10.0


def test_30fps_crop_keeps_its_fps_and_every_frame(test_data: Path, editor: Editor, tmp_path: Path) -> None:
    src = test_data / "video" / "edtalk_expression_source_cropped.mp4"
    result = editor.edit(src, tmp_path / "out.mp4", EmotionTarget(emotion="sad", intensity=0.5))
    _same_timing(src, tmp_path / "out.mp4")
    assert result.face_crop_input and result.fps == pytest.approx(30.0)
    assert _audio_streams(tmp_path / "out.mp4") == 0


@pytest.mark.parametrize("frames", [1, 7])
def test_very_short_clips(editor: Editor, tmp_path: Path, frames: int) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=frames / 25)
    result = editor.edit(src, tmp_path / "out.mp4", HAPPY)
    assert result.frames == frames
    _same_timing(src, tmp_path / "out.mp4")


def test_clip_without_audio(editor: Editor, tmp_path: Path) -> None:
    face = _frames(write_sample_clip(tmp_path / "face.mp4", seconds=0.2), 1)[0].astype(np.uint8)
    src = write_clip(tmp_path / "silent.mp4", lambda _i: face, 5)
    editor.edit(src, tmp_path / "out.mp4", HAPPY)
    assert _audio_streams(tmp_path / "out.mp4") == 0
    _same_timing(src, tmp_path / "out.mp4")


def test_rotated_stream_comes_out_upright(test_data: Path, editor: Editor, tmp_path: Path) -> None:
    """A phone-style file: pixels stored sideways plus a display rotation; the output is upright."""
    upright = [
        np.pad(f.astype(np.uint8), ((0, 50), (0, 0), (0, 0)), mode="edge")
        for f in _frames(test_data / "video" / "obama_uncropped.mp4", 8)
    ]
    src = write_clip(tmp_path / "rotated.mp4", lambda i: np.ascontiguousarray(np.rot90(upright[i], -1)), 8, rotation=90)
    info = probe(src)
    assert (info.width, info.height) == (450, 500)
    editor.edit(src, tmp_path / "out.mp4", HAPPY)
    out = _frames(tmp_path / "out.mp4")
    assert out[0].shape == (500, 450, 3)
    assert np.abs(out[3][:60, :60] - upright[3][:60, :60].astype(np.int16)).mean() < 3.0


def test_speech_target_with_the_users_clips(test_data: Path, editor: Editor, tmp_path: Path) -> None:
    clips = sorted((test_data / "speech" / "MEAD" / "happy").glob("*.wav"))
    neutral = sorted((test_data / "speech" / "MEAD" / "neutral").glob("*.wav"))
    vector = editor.vector(EmotionTarget(speech=tuple(clips), neutral_speech=tuple(neutral)))
    assert vector.shape == (1024,) and np.isfinite(vector).all() and np.abs(vector).sum() > 0
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.4)
    editor.edit(src, tmp_path / "out.mp4", EmotionTarget(speech=tuple(clips)))
    assert probe(tmp_path / "out.mp4").frame_count == 10


def test_intensity_zero_keeps_the_input_expression(editor: Editor) -> None:
    assert not editor.vector(EmotionTarget(emotion="angry", intensity=0.0)).any()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda p: p.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8) and p, "not_media"),
        (lambda p: p.write_text("just some text, not a video\n") and p, "not_media"),
        (lambda p: p, "not_found"),
    ],
)
def test_bad_files_give_clear_errors(editor: Editor, tmp_path: Path, make, code: str) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "input.mp4"
    make(src)
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "out.mp4", HAPPY)
    assert caught.value.code == code and str(src) in str(caught.value)
    assert not (tmp_path / "out.mp4").exists()


def test_truncated_video_gives_a_clear_error(editor: Editor, tmp_path: Path) -> None:
    whole = make_video(tmp_path / "whole.mp4", frames=30, size=(320, 240))
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as caught:
        editor.edit(cut, tmp_path / "out.mp4", HAPPY)
    assert caught.value.code in {"not_media", "decode_failed", "zero_frames", "no_face"}


def test_audio_only_file_has_no_video_stream(editor: Editor, test_data: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        editor.edit(test_data / "video" / "mead_W009_038.wav", tmp_path / "out.mp4", HAPPY)
    assert caught.value.code == "no_video_stream"


def test_clip_without_a_face_names_the_frames(editor: Editor, tmp_path: Path) -> None:
    src = make_video(tmp_path / "noface.mp4", frames=12, size=(320, 240))
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "out.mp4", HAPPY)
    assert caught.value.code == "no_face" and "0-11" in str(caught.value)
    assert not (tmp_path / "out.mp4").exists()


def test_unknown_emotion_and_bad_options(editor: Editor, tmp_path: Path) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.2)
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "out.mp4", EmotionTarget(emotion="furious"))
    assert caught.value.code == "unknown_emotion" and "sarcastic" in str(caught.value)
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "out.mp4", HAPPY, EditChoices(source_frame=99))
    assert caught.value.code == "bad_source_frame"
    with pytest.raises(ValueError):
        EmotionTarget(emotion="happy", speech=(src,))
    with pytest.raises(ValueError):
        EditChoices(face_index=0, face_box=(0, 0, 10, 10))


def test_too_long_input_is_refused(editor: Editor, tmp_path: Path) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=1.0)
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "out.mp4", HAPPY, EditChoices(), limits=Limits(max_duration_s=0.5))
    assert caught.value.code == "too_long"


def test_too_much_work_is_refused_before_any_frame_is_decoded(editor: Editor, tmp_path: Path) -> None:
    """The worker's line of defence for URL and asset inputs (the API probes only uploads)."""
    dense = make_dense_video(tmp_path / "dense.mp4", frames=40_000, seconds=2.0)
    start = time.perf_counter()
    with pytest.raises(InputError) as caught:
        editor.edit(dense, tmp_path / "out.mp4", HAPPY)
    assert caught.value.code == "too_many_frames" and time.perf_counter() - start < 10
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.2)
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "out.mp4", HAPPY, EditChoices(), limits=Limits(max_pixels_per_second=1000))
    assert caught.value.code == "too_many_pixels"


def test_a_frame_size_change_mid_stream_is_refused_with_a_code(editor: Editor, tmp_path: Path) -> None:
    """The probe measures the first frame; a 4K frame after a small first one must not be edited at 4K."""
    face = _frames(write_sample_clip(tmp_path / "face.mp4", seconds=0.2), 1)[0].astype(np.uint8)
    src = make_size_change(tmp_path / "grows.mkv", face, (3840, 2160), frames=12)
    limits = Limits(max_pixels_per_second=256 * 256 * 25 * 2)
    assert probe_input(src, EditChoices(), limits).width == 256  # the probe cannot see it
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "out.mp4", HAPPY, EditChoices(), limits=limits)
    assert caught.value.code == "decode_failed" and "frame 1 is 3840x2160" in str(caught.value)
    assert not (tmp_path / "out.mp4").exists()


def test_timestamps_of_a_variable_rate_clip_are_kept(editor: Editor, tmp_path: Path) -> None:
    """Frames at uneven times (a VFR phone clip): every timestamp comes back as it was."""
    face = _frames(write_sample_clip(tmp_path / "face.mp4", seconds=0.2), 1)[0].astype(np.uint8)
    src = tmp_path / "vfr.mp4"
    pts = [0, 1, 2, 4, 5, 8, 9, 10]
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width = s.height = 256
        s.pix_fmt = "yuv420p"
        s.time_base = Fraction(1, 25)
        for p in pts:
            f = av.VideoFrame.from_ndarray(face, format="rgb24")
            f.pts, f.time_base = p, Fraction(1, 25)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    editor.edit(src, tmp_path / "out.mp4", HAPPY)
    times_in = [round(f.time_s, 3) for f in read_frames(src)]
    times_out = [round(f.time_s, 3) for f in read_frames(tmp_path / "out.mp4")]
    assert times_out == times_in


@pytest.mark.slow
def test_full_size_models_on_a_few_frames(request: pytest.FixtureRequest, test_data: Path, tmp_path: Path) -> None:
    """Full-size (rule-filled) EDTalk and connector through the whole pipeline on 3 uncropped frames."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-size models (about 30 s on CPU); run with -m slow")
    from cmet_core.modelsets.build import make_filled_set

    frames = _frames(test_data / "video" / "obama_uncropped.mp4", 3)
    src = write_clip(tmp_path / "three.mp4", lambda i: frames[i].astype(np.uint8), 3)
    editor = Editor.load(make_filled_set(tmp_path / "filled"))
    result = editor.edit(src, tmp_path / "out.mp4", HAPPY)
    assert result.frames == 3 and result.network_seconds > 0
    _same_timing(src, tmp_path / "out.mp4")


def _transcode(src: Path, dst: Path, video_codec: str, audio_codec: str) -> Path:
    """The same clip in another container and codecs (PyAV, as a client's encoder would write it)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin, ain = inp.streams.video[0], inp.streams.audio[0]
        vout = out.add_stream(video_codec, rate=vin.average_rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        aout = out.add_stream(audio_codec, rate=ain.rate)
        for frame in inp.decode(vin):
            out.mux(vout.encode(frame.reformat(format="yuv420p")))
        out.mux(vout.encode())
        inp.seek(0)
        for frame in inp.decode(inp.streams.audio[0]):
            frame.pts = None
            out.mux(aout.encode(frame))
        out.mux(aout.encode())
    return dst


@pytest.mark.parametrize(
    ("suffix", "video_codec", "audio_codec"), [("webm", "libvpx-vp9", "libopus"), ("mkv", "mpeg4", "aac")]
)
def test_other_containers_and_codecs(
    editor: Editor, tmp_path: Path, suffix: str, video_codec: str, audio_codec: str
) -> None:
    src = _transcode(
        write_sample_clip(tmp_path / "talk.mp4", seconds=0.6), tmp_path / f"talk.{suffix}", video_codec, audio_codec
    )
    result = editor.edit(src, tmp_path / "out.mp4", HAPPY)
    _same_timing(src, result.output)
    assert _audio_streams(result.output) == 1
    with av.open(str(result.output)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
