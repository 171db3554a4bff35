"""`cmet edit --timeline plan.json` and `--emotion from_audio` as a user runs them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe

runner = CliRunner()


def _edit(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["edit", *args])
    return result.exit_code, result.output


def _plan(tmp_path: Path, *segments: dict[str, object]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"segments": list(segments), "transition_s": 0.2}))
    return path


def test_edit_with_a_timeline(tiny_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.8)
    plan = _plan(
        tmp_path,
        {"start_s": 0.0, "end_s": 0.4, "target": "angry", "intensity": 0.8},
        {"start_s": 0.4, "end_s": 0.8, "target": "happy=0.6,surprised=0.4"},
    )
    code, out = _edit(str(src), "--timeline", str(plan), "--models", str(tiny_set))
    assert code == 0, out
    assert probe(tmp_path / "in.timeline-plan.mp4").frame_count == 20


@pytest.mark.parametrize(
    ("segments", "said"),
    [
        ([(0.0, 0.5), (0.3, 0.8)], "[timeline_overlap]"),
        ([(0.0, 5.0)], "[timeline_past_end]"),
        ([(0.6, 0.2)], "[timeline_bad_times]"),
    ],
)
def test_a_bad_timeline_exits_2_with_its_code(
    tiny_set: Path, tmp_path: Path, segments: list[tuple[float, float]], said: str
) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.8)
    plan = _plan(tmp_path, *({"start_s": a, "end_s": b, "target": "sad"} for a, b in segments))
    code, out = _edit(str(src), "--timeline", str(plan), "--models", str(tiny_set))
    assert code == 2 and said in out, out


def test_timeline_flag_refusals(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"segments": [{"start_s": 0, "end_s": 1}]}')
    code, out = _edit("in.mp4", "--timeline", str(tmp_path / "bad.json"))
    assert code == 2 and "target" in out and "Traceback" not in out
    code, out = _edit("in.mp4", "--timeline", str(tmp_path / "bad.json"), "--emotion", "happy")
    assert code == 2 and "not both" in out
    code, out = _edit("in.mp4", "--timeline", str(tmp_path / "bad.json"), "--intensity", "0.5")
    assert code == 2 and "own intensity" in out
    code, out = _edit("in.mp4", "--emotion", "happy", "--neutral", "self")
    assert code == 2 and "from_audio" in out
    code, out = _edit("in.mp4", "--timeline", str(tmp_path / "missing.json"))
    assert code == 2 and "[not_found]" in out


@pytest.mark.skipif(importlib.util.find_spec("funasr") is None, reason="funasr not installed (cmet[speech])")
def test_from_audio_prints_the_segments_and_writes_a_plan(
    tiny_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    src = write_sample_clip(tmp_path / "in.mp4", seconds=2.0)
    plan = tmp_path / "found.json"
    code, out = _edit(
        str(src), "--emotion", "from_audio", "--neutral", "self", "--plan-out", str(plan), "--models", str(tiny_set)
    )
    assert code == 0, out
    assert "segments found in the voice" in out and "cosine" in out
    found = ClipTimeline.load(plan)
    assert found.segments[0].start_s == 0 and probe(tmp_path / "in.from_audio-self.mp4").frame_count == 50


def test_a_short_voice_track_is_named_before_the_edit(tmp_path: Path, test_data: Path) -> None:
    import soundfile

    from cmet_cli.timeline_cmd import short_voice_warning

    video = write_sample_clip(tmp_path / "in.mp4", seconds=1.0)
    wav, rate = soundfile.read(str(test_data / "video" / "mead_W009_038.wav"), dtype="float32")
    for seconds in (0.5, 1.0):
        soundfile.write(str(tmp_path / f"{seconds}.wav"), wav[: int(seconds * rate)], rate)
    said = short_voice_warning(video, tmp_path / "0.5.wav", 600)
    assert said is not None and "0.50 s" in said and "keeps its own emotion" in said and "silent" in said
    assert short_voice_warning(video, tmp_path / "1.0.wav", 600) is None
    assert "from_audio" in runner.invoke(app, ["edit", "--help"]).output
