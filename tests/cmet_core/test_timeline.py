"""Timelines: their rules and codes, the schedule the connector reads, and the expression track they give."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cmet_core.edit.expression import expression_track
from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.library import load_builtin_library
from cmet_core.emotion.speech_plan import schedule_of
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.emotion.timeline import ClipTimeline, SpeechClips, TimelineSchedule
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe, read_frames
from cmet_core.networks.connector import Connector

LIBRARY = load_builtin_library()


def _timeline(*segments: dict[str, object], transition_s: float | None = None) -> ClipTimeline:
    body: dict[str, object] = {"segments": list(segments)}
    if transition_s is not None:
        body["transition_s"] = transition_s
    return ClipTimeline.model_validate(body)


def _no_speech(_clips: object) -> np.ndarray:
    raise AssertionError("named targets never embed speech")


@pytest.fixture(scope="module")
def editor(tiny_set: Path) -> Editor:
    return Editor.load(tiny_set)


@pytest.fixture(scope="module")
def connector(editor: Editor) -> Connector:
    return editor.connector


def _walk(frames: int, seed: int = 0) -> torch.Tensor:
    """A slowly moving expression track around EDTalk's neutral scale, like a talking face's."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0, 0.05, (frames, 10)).cumsum(axis=0)
    return torch.from_numpy(steps).float()


def _track(connector: Connector, timeline: ClipTimeline, frames: int, fps: float = 25.0) -> torch.Tensor:
    times = np.arange(frames) / fps
    with torch.inference_mode():
        return expression_track(connector, _walk(frames), times, schedule_of(timeline, LIBRARY, _no_speech))


# ---------------------------------------------------------------------------------------------
# rules and codes


@pytest.mark.parametrize(
    ("segments", "duration", "code"),
    [
        ([(0.0, 1.0), (0.8, 1.5)], 2.0, ErrorCode.TIMELINE_OVERLAP),
        ([(1.0, 1.5), (0.0, 1.2)], 2.0, ErrorCode.TIMELINE_OVERLAP),  # any order, still an overlap
        ([(0.0, 2.5)], 2.0, ErrorCode.TIMELINE_PAST_END),
        ([(-0.5, 1.0)], 2.0, ErrorCode.TIMELINE_BAD_TIMES),
        ([(1.0, 0.5)], 2.0, ErrorCode.TIMELINE_BAD_TIMES),
        ([(1.0, 1.0)], 2.0, ErrorCode.TIMELINE_BAD_TIMES),
        ([(i * 0.1, i * 0.1 + 0.1) for i in range(5)], 2.0, ErrorCode.TIMELINE_TOO_MANY_SEGMENTS),
    ],
)
def test_bad_timelines_are_refused_with_their_code(
    segments: list[tuple[float, float]], duration: float, code: ErrorCode
) -> None:
    timeline = _timeline(*({"start_s": a, "end_s": b, "target": "happy"} for a, b in segments))
    with pytest.raises(InputError) as caught:
        timeline.check(max_segments=4, duration_s=duration)
    assert caught.value.code == code


def test_keyframes_must_lie_inside_their_segment_and_increase() -> None:
    outside = _timeline({"start_s": 0, "end_s": 1, "target": "sad", "keyframes": [{"t_s": 1.5, "intensity": 1}]})
    backwards = _timeline(
        {
            "start_s": 0,
            "end_s": 1,
            "target": "sad",
            "keyframes": [{"t_s": 0.6, "intensity": 1}, {"t_s": 0.4, "intensity": 0}],
        }
    )
    for timeline in (outside, backwards):
        with pytest.raises(InputError) as caught:
            timeline.check(max_segments=8)
        assert caught.value.code == ErrorCode.TIMELINE_BAD_TIMES
        assert str(caught.value).startswith("segment 1 (")  # the first segment is 1, as the page names it


def test_touching_segments_within_the_clip_pass() -> None:
    timeline = _timeline(
        {"start_s": 1.0, "end_s": 2.0, "target": "happy=0.6,surprised=0.4"},
        {"start_s": 0.0, "end_s": 1.0, "target": "angry", "intensity": 0.5},
    )
    timeline.check(max_segments=2, duration_s=2.0)
    assert [s.start_s for s in timeline.ordered()] == [0.0, 1.0]


def test_a_plan_file_with_speech_clips_is_read_beside_its_folder(tmp_path: Path) -> None:
    plan = {
        "transition_s": 0.2,
        "segments": [
            {"start_s": 0, "end_s": 1, "target": "happy"},
            {"start_s": 1, "end_s": 2, "target": {"speech": ["clips/a.wav"]}, "intensity": 0.7},
        ],
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    timeline = ClipTimeline.load(tmp_path / "plan.json")
    target = timeline.segments[1].target
    assert isinstance(target, SpeechClips) and target.speech == (tmp_path / "clips" / "a.wav",)
    assert timeline.transition_s == 0.2 and timeline.segments[0].target == "happy"


# ---------------------------------------------------------------------------------------------
# the schedule


def test_presence_is_zero_outside_and_crossfades_between_touching_segments() -> None:
    timeline = _timeline(
        {"start_s": 1.0, "end_s": 2.0, "target": "angry"},
        {"start_s": 2.0, "end_s": 3.0, "target": "happy", "intensity": 0.5},
        transition_s=0.4,
    )
    schedule = schedule_of(timeline, LIBRARY, _no_speech)
    t = np.linspace(0, 4, 401)
    presence = schedule.presence(t)
    assert np.all(presence[(t < 1.0) | (t >= 3.0)] == 0)
    assert np.all(presence[(t >= 1.4) & (t <= 2.6)] == pytest.approx(1.0))  # the cross-fade keeps full weight
    vectors = schedule.vectors(np.array([1.5, 2.0, 2.5]))
    angry, happy = LIBRARY.vector("angry"), LIBRARY.vector("happy")
    assert vectors[0] == pytest.approx(angry, abs=1e-5)
    assert vectors[1] == pytest.approx(0.5 * angry + 0.5 * 0.5 * happy, abs=1e-5)  # half way through
    assert vectors[2] == pytest.approx(0.5 * happy, abs=1e-5)


def test_keyframes_are_linear_and_held_flat_outside() -> None:
    timeline = _timeline(
        {
            "start_s": 0,
            "end_s": 4,
            "target": "sad",
            "keyframes": [{"t_s": 1, "intensity": 0.2}, {"t_s": 3, "intensity": 1.2}],
        },
        transition_s=0,
    )
    scale = schedule_of(timeline, LIBRARY, _no_speech).vectors(np.array([0.5, 2.0, 3.5])) @ LIBRARY.vector("sad")
    assert scale / float(LIBRARY.vector("sad") @ LIBRARY.vector("sad")) == pytest.approx([0.2, 0.7, 1.2], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# the expression track


@pytest.mark.parametrize("fps", [25.0, 30.0, 23.976])
def test_frames_outside_every_segment_keep_the_input_exactly(connector: Connector, fps: float) -> None:
    timeline = _timeline(
        {"start_s": 0.5, "end_s": 1.5, "target": "angry"}, {"start_s": 2.2, "end_s": 3.0, "target": "happy"}
    )
    frames = int(4 * fps)
    exp, own = _track(connector, timeline, frames, fps), _walk(frames)
    t = np.arange(frames) / fps
    outside = torch.from_numpy((t < 0.5) | ((t >= 1.5) & (t < 2.2)) | (t >= 3.0))
    assert torch.equal(exp[outside], own[outside])
    inside = torch.from_numpy(((t > 0.5) & (t < 1.5)) | ((t > 2.2) & (t < 3.0)))
    assert (exp[inside] - own[inside]).abs().amax(dim=1).min() > 0  # and inside the edit acts


def test_one_segment_over_the_whole_clip_is_the_plain_edit(connector: Connector) -> None:
    """The windows run as a whole-clip edit's do: same vector, same autoregressive loop, same deltas."""
    frames = 60
    timeline = _timeline({"start_s": 0, "end_s": frames / 25, "target": "sad"}, transition_s=0)
    vector = torch.from_numpy(LIBRARY.vector("sad").copy()).reshape(1, 1, -1)
    with torch.inference_mode():
        plain = expression_track(connector, _walk(frames), np.arange(frames) / 25, vector)
    assert torch.equal(_track(connector, timeline, frames), plain)


def _steps(connector: Connector, transition_s: float) -> dict[str, float]:
    """Largest frame-to-frame change of the track (a still face, so only the edit moves it): at a
    segment's free start (1 s), at an angry -> happy switch (3 s), and well inside a segment."""
    timeline = _timeline(
        {"start_s": 1.0, "end_s": 3.0, "target": "angry"},
        {"start_s": 3.0, "end_s": 5.0, "target": "happy"},
        transition_s=transition_s,
    )
    still = torch.full((150, 10), 0.3)
    with torch.inference_mode():
        exp = expression_track(connector, still, np.arange(150) / 25, schedule_of(timeline, LIBRARY, _no_speech))
    steps = (exp[1:] - exp[:-1]).abs().amax(dim=1).numpy()
    t = np.arange(1, 150) / 25
    return {
        "start": float(steps[np.abs(t - 1.0) <= 0.6].max()),
        "switch": float(steps[np.abs(t - 3.0) <= 0.6].max()),
        "inside": float(steps[(t > 1.8) & (t < 2.4)].max()),
    }


def test_transitions_take_the_jump_out_of_the_boundaries(connector: Connector) -> None:
    hard, soft = _steps(connector, 0.0), _steps(connector, 0.3)
    print(f"largest step at 0 s / 0.3 s transitions: {hard} / {soft}")
    assert hard["start"] > 2 * hard["inside"]  # without a transition the edit shows as a jump
    assert soft["start"] < 0.5 * hard["start"]
    # the switch moves no more than the connector moves from window to window anyway
    assert soft["switch"] <= 1.1 * max(soft["inside"], hard["inside"])


def test_an_edit_with_a_timeline_runs_and_reports_it(editor: Editor, tmp_path: Path) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=1.2)
    timeline = _timeline(
        {"start_s": 0.2, "end_s": 0.6, "target": "angry"}, {"start_s": 0.6, "end_s": 1.2, "target": "happy"}
    )
    result = editor.edit(src, tmp_path / "out.mp4", timeline)
    assert result.timeline == timeline and probe(tmp_path / "out.mp4").frame_count == 30
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "late.mp4", _timeline({"start_s": 1.0, "end_s": 3.0, "target": "sad"}))
    assert caught.value.code == ErrorCode.TIMELINE_PAST_END
    frames = [f.image for f in read_frames(tmp_path / "out.mp4")]
    assert len(frames) == 30


def test_an_empty_schedule_reads_zero_vectors() -> None:
    schedule = TimelineSchedule([], 0.3)
    assert schedule.vectors(np.zeros(3)).shape == (3, 1024) and not schedule.presence(np.zeros(3)).any()


def test_from_audio_is_no_segment_target(editor: Editor, tmp_path: Path) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.4)
    with pytest.raises(InputError) as caught:
        editor.edit(src, tmp_path / "out.mp4", _timeline({"start_s": 0, "end_s": 0.4, "target": "from_audio"}))
    assert caught.value.code == ErrorCode.BAD_EMOTION
    assert EmotionTarget(emotion="from_audio").emotion == "from_audio"


def test_a_preview_window_moves_and_cuts_the_timeline() -> None:
    """A clip preview of 2-5 s: times on the window's clock, the segment it cuts starts at its edge with
    the intensity it had there, segments outside are dropped; a window with no segment is refused."""
    plan = ClipTimeline.model_validate(
        {
            "transition_s": 0.2,
            "segments": [
                {"start_s": 0, "end_s": 1, "target": "sad"},
                {
                    "start_s": 1,
                    "end_s": 4,
                    "target": "happy",
                    "keyframes": [{"t_s": 1, "intensity": 0}, {"t_s": 3, "intensity": 1}],
                },
                {"start_s": 4.5, "end_s": 9, "target": "angry", "intensity": 0.5},
            ],
        }
    )
    window = plan.windowed(2.0, 3.0)
    assert [(s.target, s.start_s, s.end_s) for s in window.segments] == [("happy", 0.0, 2.0), ("angry", 2.5, 3.0)]
    happy = window.segments[0]
    assert [(k.t_s, k.intensity) for k in happy.keyframes] == [(0.0, 0.5), (1.0, 1.0), (2.0, 1.0)]
    assert window.transition_s == 0.2 and window.segments[1].intensity == 0.5
    window.check(64, 3.0)  # a valid timeline of the window's clip
    with pytest.raises(InputError) as empty:
        plan.windowed(9.5, 1.0)
    assert empty.value.code is ErrorCode.BAD_PREVIEW_WINDOW
