"""A job's timeline: stored with the spec, fetched by the worker, shown by the API."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cmet_core.emotion.timeline import ClipTimeline, ReferenceFile, SpeechClips
from cmet_core.emotion.voice import FollowVoice
from cmet_jobs import schemas, timelines
from cmet_jobs.spec import EditSpec, InputRef, SpecTimeline

SPEC_TIMELINE = {
    "transition_s": 0.1,
    "segments": [
        {"start_s": 0, "end_s": 1, "target": "angry"},
        {"start_s": 1, "end_s": 2, "target": {"speech": [{"key": "jobs/x/input/a"}, {"url": "https://e.example/b"}]}},
        {"start_s": 2, "end_s": 3, "target": {"speech": [{"key": "jobs/x/input/c"}]}, "intensity": 0.5},
        {"start_s": 3, "end_s": 4, "target": {"expression_reference": {"key": "jobs/x/input/r"}}},
    ],
}


def _spec(**fields: object) -> EditSpec:
    return EditSpec.model_validate({"video": {"key": "jobs/x/input/video"}, **fields})


def test_the_worker_fetches_each_segments_clips_under_its_own_name(tmp_path: Path) -> None:
    fetched: list[tuple[InputRef, str, str]] = []

    def fetch(ref: InputRef, name: str, kind: str) -> Path:
        fetched.append((ref, name, kind))
        return tmp_path / name

    target = _spec(timeline=SPEC_TIMELINE).edit_target([], fetch)
    assert isinstance(target, ClipTimeline) and target.transition_s == 0.1
    assert [(name, kind) for _, name, kind in fetched] == [
        ("segment1-speech0", "speech"),
        ("segment1-speech1", "speech"),
        ("segment2-speech0", "speech"),
        ("segment3-reference", "video"),  # a photo or clip: the video size limit
    ]
    second = target.segments[1].target
    assert isinstance(second, SpeechClips)
    assert second.speech == (tmp_path / "segment1-speech0", tmp_path / "segment1-speech1")
    assert target.segments[0].target == "angry" and target.segments[2].intensity == 0.5
    assert target.segments[3].target == ReferenceFile(expression_reference=tmp_path / "segment3-reference")
    assert target.speaks() and not ClipTimeline(segments=(target.segments[3],)).speaks()


def test_from_audio_becomes_following_the_voice() -> None:
    target = _spec(emotion="from_audio", intensity=0.7, neutral="self").edit_target([], lambda _r, _n, _k: Path())
    assert target == FollowVoice(intensity=0.7, neutral="self")


def test_a_spec_has_exactly_one_target() -> None:
    with pytest.raises(ValidationError):
        _spec(emotion="happy", timeline=SPEC_TIMELINE)
    with pytest.raises(ValidationError):
        _spec()


def test_the_api_shows_speech_targets_as_clip_counts() -> None:
    shown = timelines.shown(SpecTimeline.model_validate(SPEC_TIMELINE))
    assert shown is not None
    assert [s.target for s in shown.segments] == [
        "angry",
        schemas.ShownSpeech(speech_clips=2),
        schemas.ShownSpeech(speech_clips=1),
        schemas.ShownReference(),
    ]
    assert timelines.shown(None) is None


def test_request_speech_targets_need_a_clip() -> None:
    with pytest.raises(ValidationError):
        schemas.EditCreate.model_validate({"timeline": {"segments": [{"start_s": 0, "end_s": 1, "target": {}}]}})
    body = schemas.EditCreate.model_validate(
        {"timeline": {"segments": [{"start_s": 0, "end_s": 1, "target": {"speech_urls": ["https://e.example/a"]}}]}}
    )
    assert timelines.speech_urls(body.timeline) == ["https://e.example/a"]
