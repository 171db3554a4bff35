"""`cmet edit` as a user runs it: flags, the embedded sample, summary, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cmet_cli.edit_cmd import spread_values
from cmet_cli.face_flags import faces_of
from cmet_cli.main import app
from cmet_cli.output_names import default_output
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.emotion.voice import FollowVoice
from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe

runner = CliRunner()


def _edit(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["edit", *args])
    return result.exit_code, result.output


def test_speech_takes_several_files_after_one_flag() -> None:
    args = ["in.mp4", "--speech", "a.wav", "b.wav", "-o", "out.mp4", "--neutral-speech", "n.wav", "m.wav"]
    assert spread_values(args) == [
        "in.mp4",
        "--speech",
        "a.wav",
        "--speech",
        "b.wav",
        "-o",
        "out.mp4",
        "--neutral-speech",
        "n.wav",
        "--neutral-speech",
        "m.wav",
    ]


def test_edit_named_emotion(tiny_set: Path, tmp_path: Path) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.4)
    code, out = _edit(
        str(src),
        "--emotion",
        "sarcastic",
        "--intensity",
        "1.2",
        "-o",
        str(tmp_path / "o.mp4"),
        "--models",
        str(tiny_set),
    )
    assert code == 0, out
    assert "10 frames" in out and "render" in out and "total" in out
    assert probe(tmp_path / "o.mp4").frame_count == 10


def test_edit_with_the_restorer(tiny_set: Path, tmp_path: Path) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.2)
    args = ("--emotion", "happy", "--enhance", "on", "--enhance-strength", "0.8", "--upscale", "2")
    code, out = _edit(str(src), *args, "-o", str(tmp_path / "o.mp4"), "--models", str(tiny_set))
    assert code == 0, out
    assert "enhance" in out and "512x512" in out
    code, out = _edit(str(src), "--emotion", "happy", "--enhance", "maybe", "--models", str(tiny_set))
    assert code == 2 and "enhance" in out and "Traceback" not in out


def test_default_output_names_in_the_current_folder_never_overwrite(
    tiny_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The input's folder may be read-only: the output goes to the current one, named after the blend (not
    as a plain happy edit would be), and a second run refuses to replace it until --force."""
    inputs, work = tmp_path / "shared", tmp_path / "work"
    inputs.mkdir(), work.mkdir()
    monkeypatch.chdir(work)
    src = write_sample_clip(inputs / "talk.mp4", seconds=0.2)
    code, out = _edit(str(src), "--blend", "happy=0.6,surprised=0.4", "--models", str(tiny_set))
    assert code == 0, out
    assert [p.name for p in work.iterdir()] == ["talk.happy0.6-surprised0.4.mp4"]
    assert [p.name for p in inputs.iterdir()] == ["talk.mp4"]
    written = (work / "talk.happy0.6-surprised0.4.mp4").stat().st_mtime_ns
    code, out = _edit(str(src), "--blend", "happy=0.6,surprised=0.4", "--models", str(tiny_set))
    assert code == 2 and "[output_exists]" in out and "--force" in out, out
    assert (work / "talk.happy0.6-surprised0.4.mp4").stat().st_mtime_ns == written


def test_default_output_names_tell_edits_apart() -> None:

    talk = Path("/videos/talk.mp4")

    def name(**target: object) -> str:
        extra = {k: target.pop(k) for k in ("lips_from", "voice_from", "preview") if k in target}
        return default_output(talk, EmotionTarget(**target), **extra).name  # type: ignore[arg-type]

    assert name(emotion="happy") == "talk.happy.mp4"
    assert name(emotion="happy", intensity=1.5) == "talk.happy-x1.5.mp4"
    assert name(emotion="happy=0.6,surprised=0.4") == "talk.happy0.6-surprised0.4.mp4"
    assert name(speech=(Path("a/angry 01.wav"), Path("b.wav"))) == "talk.speech-angry_01+1.mp4"
    assert name(emotion="sad", lips_from=Path("line.wav")) == "talk.sad.dub-line.mp4"
    assert name(emotion="sad", preview=True) == "talk.sad.preview.mp4"
    plan = ClipTimeline.model_validate({"segments": [{"start_s": 0, "end_s": 1, "target": "sad"}]})
    assert default_output(talk, plan, timeline=Path("take2.json")).name == "talk.timeline-take2.mp4"
    voice = FollowVoice(neutral="self")
    assert default_output(talk, voice, voice_from=Path("fr.wav")).name == "talk.from_audio-self.voice-fr.mp4"
    assert not default_output(talk, voice).is_absolute()  # the current folder, not /videos


def test_edit_speech_clips(tiny_set: Path, tmp_path: Path, test_data: Path) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.2)
    angry = sorted((test_data / "speech" / "MEAD" / "angry").glob("*.wav"))
    neutral = sorted((test_data / "speech" / "MEAD" / "neutral").glob("*.wav"))
    code, out = _edit(
        str(src),
        "-o",
        str(tmp_path / "o.mp4"),
        "--models",
        str(tiny_set),
        "--speech",
        *map(str, angry),
        "--neutral-speech",
        *map(str, neutral),
    )
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--emotion", "furious"], "[unknown_emotion]"),
        (["--emotion", "happy", "--intensity", "7"], "intensity"),
        (["--emotion", "happy", "--blend", "sad=1"], "not both"),
        ([], "exactly one"),
        (["--emotion", "happy", "--face-box", "1,2,3"], "four numbers"),
        (["--emotion", "happy=x"], "[bad_emotion]"),
        (["--emotion", "happy", "--library", "/no/such/library.json"], "[bad_library]"),
    ],
)
def test_bad_usage_exits_2_with_one_line(tiny_set: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    src = write_sample_clip(tmp_path / "in.mp4", seconds=0.2)
    code, out = _edit(str(src), "--models", str(tiny_set), *args)
    assert code == 2 and needle in out and "Traceback" not in out


def test_bad_input_file_exits_2(tiny_set: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    code, out = _edit(str(tmp_path / "notes.txt"), "--emotion", "happy", "--models", str(tiny_set))
    assert code == 2 and "[not_media]" in out and "Traceback" not in out
    assert "0/?" not in out and "[not_media]" in out.strip().splitlines()[-1], out  # no empty bars under it


def test_no_models_says_what_to_fetch(tmp_path: Path) -> None:
    code, out = _edit("--emotion", "happy", "--models", str(tmp_path / "none"))
    assert code == 1 and "cmet models pull" in out and "make-tiny" in out


def test_installed_entry_point_edits_the_embedded_sample(tiny_set: Path, tmp_path: Path) -> None:
    """The README's first command, minus the install: `cmet edit` with no INPUT."""
    cmet = Path(sys.executable).with_name("cmet")
    proc = subprocess.run(
        [str(cmet), "edit", "--emotion", "happy", "--models", str(tiny_set)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sample" in proc.stderr and probe(tmp_path / "sample.edited.mp4").frame_count == 50


def _speech(test_data: Path, tmp_path: Path, seconds: float) -> Path:
    import soundfile

    wav, rate = soundfile.read(str(test_data / "video" / "mead_W009_038.wav"), dtype="float32")
    soundfile.write(str(tmp_path / "line.wav"), wav[: int(seconds * rate)], rate)
    return tmp_path / "line.wav"


def test_dub_a_video_and_animate_a_photo(
    tiny_set: Path, tmp_path: Path, test_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _speech(test_data, tmp_path, 0.6)
    talk = write_sample_clip(tmp_path / "talk.mp4")
    code, output = _edit(str(talk), "--lips-from", str(line), "--emotion", "happy", "--models", str(tiny_set))
    assert code == 0, output
    assert "lips" in output and probe(Path("talk.happy.dub-line.mp4")).frame_count == 15
    photo = test_data / "faces" / "uncropped_face.jpg"
    pose = test_data / "video" / "edtalk_pose_source1_cropped.mp4"
    out = tmp_path / "photo.mp4"
    args = [str(photo), "--lips-from", str(line), "--pose-from", str(pose), "--emotion", "sarcastic", "-o", str(out)]
    code, output = _edit(*args, "--models", str(tiny_set))
    assert code == 0, output
    info = probe(out)
    assert (info.width, info.height, info.frame_count) == (840, 1024, 15)
    code, output = _edit(str(photo), "--emotion", "happy", "--models", str(tiny_set))
    assert code == 2 and "[photo_needs_speech]" in output and "--lips-from" in output, output
    assert "lips: speech" not in output  # the CLI's flags, not the API's fields
    bad_fill = ["--pose-fill", "spin", "--models", str(tiny_set)]
    code, output = _edit(str(talk), "--lips-from", str(line), "-e", "happy", *bad_fill)
    assert code == 2 and "pose_fill" in output, output


def test_faces_from_face_flags_or_a_plan_file(tmp_path: Path) -> None:
    assert faces_of(["0:happy", "speaker:from_audio", "1,2,30,40:happy=0.6,sad=0.4@0.5"], None) == [
        {"select": 0, "emotion": "happy"},
        {"select": "speaker", "emotion": "from_audio"},
        {"select": [1.0, 2.0, 30.0, 40.0], "emotion": "happy=0.6,sad=0.4", "intensity": 0.5},
    ]
    plan = tmp_path / "faces.json"
    plan.write_text(json.dumps([{"select": 1, "emotion": "sad"}]))
    assert faces_of(None, plan) == [{"select": 1, "emotion": "sad"}]
    for flags, path in ((["happy"], None), (["left:happy"], None), (["0:happy@x"], None), (["0:happy"], plan)):
        with pytest.raises(typer.Exit) as caught:
            faces_of(flags, path)
        assert caught.value.exit_code == 2
    code, out = _edit("in.mp4", "--face", "0:happy", "--emotion", "sad")
    assert code == 2 and "each face has its own target" in out
