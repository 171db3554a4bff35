"""Lips from speech (dubbing) end to end on the tiny set: a video or a photo speaks a speech track.

The tiny models' faces are noise, so these tests check what dubbing promises: the output lasts as
long as the speech at 25 fps, its audio is the speech, the pose source fills as asked, a photo
keeps its resolution, and every bad combination is refused with its code.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from cmet_core.edit.lips import check_inputs, filled, on_lip_grid, plan
from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.audio import load_audio
from cmet_core.media.speech_track import read_track
from cmet_core.media.video import probe, read_frames
from cmet_core.options import EditChoices, Limits
from tests.media_factory import make_speech, make_video

HAPPY = EmotionTarget(emotion="happy")
DUB = EditChoices(lips="speech")


@pytest.fixture(scope="module")
def editor(tiny_set: Path) -> Editor:
    return Editor.load(tiny_set)


@pytest.fixture(scope="module")
def speech_16k(test_data: Path) -> np.ndarray:
    wav, rate = soundfile.read(str(test_data / "video" / "mead_W009_038.wav"), dtype="float32")
    assert rate == 16000
    return wav


@pytest.fixture(scope="module")
def line_mp3(speech_16k: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1.3 s of real speech as a 44.1 kHz stereo mp3: other words than the video's first 1.3 s."""
    return make_speech(tmp_path_factory.mktemp("speech") / "line.mp3", speech_16k[3 * 16000 : int(4.3 * 16000)])


def _duration(path: Path, kind: str) -> float:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0] if kind == "audio" else c.streams.video[0]
        assert stream.duration is not None and stream.time_base is not None
        return float(stream.duration * stream.time_base)


def _similarity(a: np.ndarray, b: np.ndarray, max_shift: int = 800) -> float:
    """Best correlation of the 25 ms loudness envelopes of two 16 kHz signals within +-50 ms of shift."""

    def envelope(x: np.ndarray) -> np.ndarray:
        return np.sqrt(np.convolve(x**2, np.ones(400) / 400, mode="valid"))

    n = min(a.shape[0], b.shape[0]) - max_shift
    ea, eb = envelope(a[: n + max_shift]), envelope(b[: n + max_shift])
    m = n - 400
    return max(float(np.corrcoef(ea[s : s + m], eb[:m])[0, 1]) for s in range(0, max_shift, 50))


# -- the plan ----------------------------------------------------------------------------------


def test_pose_source_on_the_lip_grid() -> None:
    assert on_lip_grid(np.arange(5) / 25).tolist() == [0, 1, 2, 3, 4]
    # 30 fps: the frame showing at each 40 ms tick
    assert on_lip_grid(np.arange(7) / 30).tolist() == [0, 1, 2, 3, 4, 6]
    assert on_lip_grid(np.zeros(1)).tolist() == [0]


@pytest.mark.parametrize(
    ("fill", "expected"),
    [
        ("bounce", [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]),
        ("loop", [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]),
        ("hold", [0, 1, 2, 3, 3, 3, 3, 3, 3, 3]),
    ],
)
def test_fills(fill: str, expected: list[int]) -> None:
    assert filled(np.arange(4), 10, fill).tolist() == expected
    assert filled(np.arange(4), 2, fill).tolist() == [0, 1]  # a shorter speech ends the output early
    assert filled(np.zeros(1, int), 3, fill).tolist() == [0, 0, 0]


def test_plan_of_a_photo_always_pastes_into_the_photo() -> None:
    frames = plan(np.arange(3) / 25, 5, "bounce", photo=True)
    assert [(f.pose, f.background, f.lip) for f in frames] == [(0, 0, 0), (1, 0, 1), (2, 0, 2), (1, 0, 3), (0, 0, 4)]
    video = plan(np.arange(3) / 25, 4, "loop", photo=False)
    assert [(f.pose, f.background) for f in video] == [(0, 0), (1, 1), (2, 2), (0, 0)]


@pytest.mark.parametrize(
    ("lips", "photo", "track", "pose", "code"),
    [
        ("video", True, True, False, ErrorCode.PHOTO_NEEDS_SPEECH),
        ("speech", False, False, False, ErrorCode.SPEECH_TRACK_MISSING),
        ("speech", True, False, True, ErrorCode.SPEECH_TRACK_MISSING),
        ("video", False, True, False, ErrorCode.SPEECH_TRACK_UNUSED),
        ("speech", False, True, True, ErrorCode.POSE_VIDEO_NEEDS_PHOTO),
    ],
)
def test_bad_combinations(lips: str, photo: bool, track: bool, pose: bool, code: ErrorCode) -> None:
    with pytest.raises(InputError) as err:
        check_inputs(lips, photo=photo, speech_track=track, pose_video=pose)
    assert err.value.code == code


# -- reading the speech track ------------------------------------------------------------------


def test_a_16k_wav_reads_as_the_kit_waveform(conformance_kit: Path, tmp_path: Path) -> None:
    golden = np.load(conformance_kit / "audio2lip" / "golden_audio2lip.npz")
    path = tmp_path / "w.wav"
    soundfile.write(str(path), golden["wav_int16"], 16000, subtype="PCM_16")
    np.testing.assert_array_equal(read_track(path, 60.0), golden["wav_float"])


def test_speech_track_errors(tmp_path: Path, speech_16k: np.ndarray) -> None:
    silent = tmp_path / "silent.wav"
    soundfile.write(str(silent), np.zeros(16000, np.float32), 16000)
    short = tmp_path / "short.wav"
    soundfile.write(str(short), speech_16k[:300], 16000)
    cases = [
        (make_video(tmp_path / "mute.mp4", audio=False), 60.0, ErrorCode.NO_AUDIO),
        (silent, 60.0, ErrorCode.SILENT_SPEECH),
        (short, 60.0, ErrorCode.SPEECH_TOO_SHORT),
        (make_speech(tmp_path / "long.mp3", speech_16k[: 3 * 16000]), 2.0, ErrorCode.SPEECH_TOO_LONG),
        (tmp_path / "nothing.wav", 60.0, ErrorCode.NOT_FOUND),
    ]
    for path, limit, code in cases:
        with pytest.raises(InputError) as err:
            read_track(path, limit)
        assert err.value.code == code, path


# -- end to end --------------------------------------------------------------------------------


def test_video_dubbed_with_a_44k_stereo_mp3(test_data: Path, editor: Editor, line_mp3: Path, tmp_path: Path) -> None:
    src = test_data / "video" / "mead_W009_038_cropped.mp4"  # 7 s: longer than the speech
    stages: list[str] = []
    result = editor.edit(
        src, tmp_path / "dub.mp4", HAPPY, DUB, lambda s, _d, _t: stages.append(s), speech_track=line_mp3
    )
    wav = read_track(line_mp3, 60.0)
    assert result.frames == wav.shape[0] // 640 and result.fps == 25.0
    out = probe(tmp_path / "dub.mp4")
    assert out.frame_count == result.frames and out.fps == 25 and (out.width, out.height) == (256, 256)
    speech_s = _duration(line_mp3, "audio")
    assert abs(_duration(tmp_path / "dub.mp4", "video") - speech_s) <= 1 / 25
    assert abs(_duration(tmp_path / "dub.mp4", "audio") - speech_s) <= 1 / 25
    # its audio is the speech (re-encoded as AAC, whose priming may shift it by a few ms), not the video's own
    heard, said = load_audio(tmp_path / "dub.mp4"), load_audio(line_mp3)
    assert _similarity(heard, said) > 0.95
    assert _similarity(heard, load_audio(src)) < 0.9
    assert {"lips", "render"} <= set(stages) and {"mel", "lips"} <= set(result.stage_seconds)


@pytest.mark.parametrize("fill", ["bounce", "loop", "hold"])
def test_speech_longer_than_the_video_fills_the_pose(
    fill: str, editor: Editor, speech_16k: np.ndarray, tmp_path: Path
) -> None:
    src = make_video(tmp_path / "short.mp4", frames=6, size=(256, 256))  # a face crop: no detection needed
    track = tmp_path / "line.wav"
    soundfile.write(str(track), speech_16k[: 16000 // 2], 16000)  # 0.5 s: 12 frames
    options = EditChoices(lips="speech", pose_fill=fill)
    result = editor.edit(src, tmp_path / "out.mp4", HAPPY, options, speech_track=track)
    assert result.frames == 12 and probe(tmp_path / "out.mp4").frame_count == 12
    assert abs(_duration(tmp_path / "out.mp4", "video") - 0.5) <= 1 / 25


def test_frame_feed_gives_any_order(tmp_path: Path) -> None:
    from cmet_core.edit.dubbing import FrameFeed

    src = make_video(tmp_path / "clip.mp4", frames=12, size=(64, 48), audio=False)
    frames = [f.image for f in read_frames(src)]
    order = filled(np.arange(12), 40, "bounce").tolist() + [3, 3, 7, 2, 0]
    got = list(FrameFeed(src, block=5).frames(order))
    assert len(got) == len(order)
    for i, image in zip(order, got, strict=True):
        np.testing.assert_array_equal(image, frames[i])


def test_photo_animated_with_speech_and_a_pose_video(
    test_data: Path, editor: Editor, speech_16k: np.ndarray, tmp_path: Path
) -> None:
    photo = test_data / "faces" / "uncropped_face.jpg"  # 840x1024
    track = tmp_path / "line.wav"
    soundfile.write(str(track), speech_16k[: int(0.8 * 16000)], 16000)
    pose = test_data / "video" / "edtalk_pose_source1_cropped.mp4"
    options = EditChoices(lips="speech")
    result = editor.edit(photo, tmp_path / "photo.mp4", HAPPY, options, speech_track=track, pose_video=pose)
    out = probe(tmp_path / "photo.mp4")
    assert (out.width, out.height) == (840, 1024) and out.frame_count == result.frames == 20
    assert out.has_audio
    first = next(read_frames(tmp_path / "photo.mp4")).image.astype(int)
    from cmet_core.media.photo import read_photo

    original = read_photo(photo, 1e8).astype(int)
    assert np.abs(first[:100, :100] - original[:100, :100]).mean() < 4  # pasted back around the face only
    still = editor.edit(photo, tmp_path / "still.mp4", HAPPY, options, speech_track=track)
    assert still.frames == 20 and (still.width, still.height) == (840, 1024)


def test_dubbing_errors(
    editor: Editor, tiny_set: Path, test_data: Path, speech_16k: np.ndarray, tmp_path: Path
) -> None:
    video = make_video(tmp_path / "v.mp4", frames=4, size=(256, 256))
    photo = test_data / "faces" / "uncropped_face.jpg"
    track = tmp_path / "line.wav"
    soundfile.write(str(track), speech_16k[:8000], 16000)
    cases = [
        (photo, EditChoices(), {}, ErrorCode.PHOTO_NEEDS_SPEECH),
        (video, DUB, {}, ErrorCode.SPEECH_TRACK_MISSING),
        (video, DUB, {"speech_track": track, "pose_video": video}, ErrorCode.POSE_VIDEO_NEEDS_PHOTO),
        (video, DUB, {"speech_track": video.with_name("none.wav")}, ErrorCode.NOT_FOUND),
        (video, DUB, {"speech_track": make_video(tmp_path / "mute.mp4", audio=False)}, ErrorCode.NO_AUDIO),
        (video, DUB, {"speech_track": track, "limits": Limits(max_duration_s=0.25)}, ErrorCode.SPEECH_TOO_LONG),
    ]
    for src, options, inputs, code in cases:
        with pytest.raises(InputError) as err:
            editor.edit(src, tmp_path / "out.mp4", HAPPY, options, **inputs)
        assert err.value.code == code, (src, options, inputs)
    assert not (tmp_path / "out.mp4").exists()
    without = Editor.load(tiny_set)
    without.lips = None  # what a set made without Audio2Lip loads as
    with pytest.raises(InputError) as err:
        without.edit(video, tmp_path / "out.mp4", HAPPY, DUB, speech_track=track)
    assert err.value.code == ErrorCode.LIPS_UNAVAILABLE
    assert without.edit(video, tmp_path / "plain.mp4", HAPPY).frames == 4  # it still edits


# -- a dub with the other features of an edit --------------------------------------------------


def test_a_photo_dub_with_the_face_restored(
    test_data: Path, editor: Editor, speech_16k: np.ndarray, tmp_path: Path
) -> None:
    """enhance on in a dub: the restorer's stage runs on every output frame of the photo."""
    photo = test_data / "faces" / "uncropped_face.jpg"
    track = tmp_path / "line.wav"
    soundfile.write(str(track), speech_16k[: int(0.4 * 16000)], 16000)
    options = EditChoices(lips="speech", enhance="on")
    result = editor.edit(photo, tmp_path / "hd.mp4", HAPPY, options, speech_track=track)
    assert result.frames == 10 and (result.width, result.height) == (840, 1024)
    assert result.stage_seconds.get("enhance", 0) > 0
    plain = editor.edit(
        photo, tmp_path / "plain.mp4", HAPPY, EditChoices(lips="speech", enhance="off"), speech_track=track
    )
    restored, unrestored = (next(read_frames(p)).image.astype(int) for p in (result.output, plain.output))
    assert np.abs(restored - unrestored).mean() > 0.1  # the face changed, the frame kept its size


def test_a_dubs_timeline_follows_the_speech_clock(editor: Editor, speech_16k: np.ndarray, tmp_path: Path) -> None:
    """A segment over the last 0.4 s of a 1 s dub of a 0.25 s video: edited where it is heard (the
    video's own frames end at 0.25 s; bounce repeats them), and before it the input's own expression."""
    from cmet_core.emotion.timeline import ClipTimeline

    src = make_video(tmp_path / "short.mp4", frames=6, size=(256, 256))
    track = tmp_path / "line.wav"
    soundfile.write(str(track), speech_16k[:16000], 16000)

    def late(target: str) -> ClipTimeline:
        segment = {"start_s": 0.6, "end_s": 1.0, "target": target, "intensity": 2}
        return ClipTimeline.model_validate({"transition_s": 0.0, "segments": [segment]})

    angry = editor.edit(src, tmp_path / "a.mp4", late("angry"), DUB, speech_track=track)
    happy = editor.edit(src, tmp_path / "h.mp4", late("happy"), DUB, speech_track=track)
    assert angry.frames == happy.frames == 25
    a, b = ([f.image.astype(int) for f in read_frames(p)] for p in (angry.output, happy.output))
    before = max(np.abs(x - y).mean() for x, y in zip(a[:12], b[:12], strict=True))
    inside = min(np.abs(x - y).mean() for x, y in zip(a[17:], b[17:], strict=True))
    assert inside > 2.5 * before  # before: only the encoder's look-ahead (later frames) differs


def test_following_a_separate_speech_track(test_data: Path, editor: Editor, line_mp3: Path, tmp_path: Path) -> None:
    """emotion from_audio with a speech track and the video's own lips: the face follows that track's
    voice, the video keeps its frames and length, and the track is the output's audio."""
    src = test_data / "video" / "mead_W009_038_cropped.mp4"
    short = tmp_path / "two_s.mp4"
    with av.open(str(src)) as c:
        rate = c.streams.video[0].average_rate
    make_video(short, frames=int(1.3 * float(rate or 25)), size=(256, 256), audio=False)
    result = editor.edit(short, tmp_path / "voice.mp4", EmotionTarget(emotion="from_audio"), speech_track=line_mp3)
    assert result.voice and result.timeline is not None
    out = probe(tmp_path / "voice.mp4")
    assert out.frame_count == probe(short).frame_count and out.has_audio
    assert _similarity(load_audio(tmp_path / "voice.mp4"), load_audio(line_mp3)) > 0.95
    with pytest.raises(InputError) as unused:
        editor.edit(short, tmp_path / "x.mp4", HAPPY, speech_track=line_mp3)
    assert unused.value.code is ErrorCode.SPEECH_TRACK_UNUSED
