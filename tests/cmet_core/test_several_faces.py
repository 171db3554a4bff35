"""Several faces in one edit (`EditChoices.faces`): tracking them apart, choosing the active speaker, and one
edit of a two-person clip made here from two fixture talkers who take turns (`make_two_face_clip`), so who
speaks when, and where each face is, are known. Tiny models render random faces: the edit is checked for
where it changed the frames, not for how the faces look."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from cmet_cli.main import app
from cmet_core.edit.pipeline import Editor, EditResult
from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces import Box, Detection, FaceSelection, track_many
from cmet_core.faces.turns import SpeakerTurn, presence, turns
from cmet_core.media.sample import TWO_FACE_BOXES
from cmet_core.media.video import probe, read_frames
from cmet_core.options import EditChoices
from tests.media_factory import make_two_face_clip

TURN_S = 1.6


def _face(x: float, y: float = 50.0, w: float = 40.0) -> Detection:
    return Detection(Box(x - w / 2, y - w / 2, x + w / 2, y + w / 2), score=0.9, frontal=0.9)


def test_faces_are_tracked_apart_and_one_that_leaves_is_found_again() -> None:
    frames = [[_face(100), _face(300)] for _ in range(6)]
    frames += [[_face(300)] for _ in range(4)]  # the left face leaves ...
    frames += [[_face(300), _face(120)] for _ in range(4)]  # ... and comes back a little to the right
    found = track_many(frames, [FaceSelection(index=1)], candidates=True)
    assert found.labels == [1, 0]
    right, left = found.boxes
    assert all(box is not None and box.cx == 300 for box in right)
    assert [box is not None for box in left] == [True] * 6 + [False] * 4 + [True] * 4
    assert left[-1] is not None and left[-1].cx == 120


def test_selections_that_match_no_face_or_one_face_twice_are_refused() -> None:
    frames = [[_face(100), _face(300)] for _ in range(4)]
    for selections, code in [
        ([FaceSelection(index=2)], ErrorCode.BAD_FACE_SELECTION),
        ([FaceSelection(box=Box(500, 0, 600, 90))], ErrorCode.BAD_FACE_SELECTION),
        ([FaceSelection(index=0), FaceSelection(box=Box(90, 40, 110, 60))], ErrorCode.FACE_SELECTED_TWICE),
    ]:
        with pytest.raises(InputError) as caught:
            track_many(frames, selections)
        assert caught.value.code == code


def test_the_speaker_holds_through_a_noisy_stretch_and_fades_at_the_turns() -> None:
    times = np.arange(0, 4, 0.04)
    rng = np.random.default_rng(0)
    energy = np.abs(np.sin(times * 9)) + 0.1
    first = np.where(times < 2, energy, 0.3) + rng.normal(0, 0.002, len(times))
    second = np.where(times >= 2, energy, 0.3) + rng.normal(0, 0.002, len(times))
    second[(times > 0.9) & (times < 1.1)] += rng.normal(0, 0.5, 5)  # one noisy stretch of the listener
    found = turns(times, np.stack([first, second]), energy, [3, 5], 4.0)
    assert [turn.face for turn in found] == [3, 5]
    assert 1.6 <= found[1].start_s <= 2.2
    weight = presence([SpeakerTurn(start_s=0, end_s=2, face=3)], 3, np.array([0.0, 1.0, 1.95, 2.0, 2.2]))
    assert weight.tolist() == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.0])


def test_what_is_refused_before_any_frame_is_decoded() -> None:
    many = EditChoices(faces=[{"select": i, "emotion": "happy"} for i in range(5)])  # type: ignore[arg-type]
    twice = EditChoices(faces=[{"select": 0, "emotion": "happy"}, {"select": 0, "emotion": "sad"}])  # type: ignore[list-item]
    speaker = EditChoices(faces=[{"select": "speaker", "emotion": "happy"}])  # type: ignore[list-item]
    for choices, has_audio, code in [
        (many, True, ErrorCode.TOO_MANY_FACES),
        (twice, True, ErrorCode.FACE_SELECTED_TWICE),
        (speaker, False, ErrorCode.SPEAKER_NEEDS_AUDIO),
    ]:
        with pytest.raises(InputError) as caught:
            choices.check_faces(4, has_audio)
        assert caught.value.code == code
    speaker.check_faces(4, True)
    with pytest.raises(ValueError, match="not both"):
        EditChoices(face_index=0, faces=[{"select": 1, "emotion": "sad"}])  # type: ignore[list-item]


@pytest.fixture(scope="module")
def two_faces(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_two_face_clip(test_data, tmp_path_factory.mktemp("two") / "talk.mp4", turn_s=TURN_S)


def _changes(src: Path, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame, the mean absolute change of the left face's place, the right face's, and the background."""
    rows = []
    for a, b in zip(read_frames(src), read_frames(out), strict=False):  # a clip preview: its window's frames
        diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).mean(axis=2)
        places = [diff[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in TWO_FACE_BOXES]
        background = np.concatenate([diff[:, :20].ravel(), diff[:, 225:255].ravel(), diff[228:, :].ravel()])
        rows.append([*places, background.mean()])
    table = np.asarray(rows)
    return table[:, 0], table[:, 1], table[:, 2]


def _kept_timing_and_audio(src: Path, out: Path) -> None:
    a, b = probe(src), probe(out)
    assert (b.frame_count, b.fps, b.width, b.height) == (a.frame_count, a.fps, a.width, a.height)
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1


@pytest.fixture(scope="module")
def speaker_edit(two_faces: Path, tiny_set: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EditResult]:
    out = tmp_path_factory.mktemp("speaker") / "out.mp4"
    choices = EditChoices(quality=False, faces=[{"select": "speaker", "emotion": "happy"}])  # type: ignore[list-item]
    return out, Editor.load(tiny_set).edit(two_faces, out, None, choices)


def test_the_speaker_is_found_and_only_the_speaking_face_changes(
    two_faces: Path, speaker_edit: tuple[Path, EditResult]
) -> None:
    out, result = speaker_edit
    _kept_timing_and_audio(two_faces, out)
    assert [turn.face for turn in result.speakers] == [0, 1]
    times = np.arange(result.frames) / result.fps
    known = (times >= TURN_S).astype(int)  # the left face speaks first, then the right one
    chosen = np.array([next(t.face for t in result.speakers if t.start_s <= x < t.end_s) for x in times])
    assert (chosen == known).mean() >= 0.85, result.speakers
    left, right, background = _changes(two_faces, out)
    first, second = slice(0, int(TURN_S * 25) - 10), slice(int(TURN_S * 25) + 15, None)
    assert left[first].min() > 8 and right[second].min() > 8  # the speaker's face is the edit's
    assert right[first].max() < 3 and left[second].max() < 3  # the listener's is the input's
    assert background.max() < 3


def test_two_faces_two_targets_in_one_job_through_the_cli(two_faces: Path, tiny_set: Path, tmp_path: Path) -> None:
    """Both faces edited in every frame of a clip preview's window (a second of the clip, to keep it short)."""
    out = tmp_path / "both.mp4"
    args = [str(two_faces), "--face", "0:happy", "--face", "1:sad@0.5", "--no-quality", "-o", str(out)]
    result = CliRunner().invoke(app, ["edit", *args, "--preview-s", "1", "--models", str(tiny_set)])
    assert result.exit_code == 0, result.output
    assert probe(out).frame_count == 25
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 1
    left, right, background = _changes(two_faces, out)
    assert left.min() > 8 and right.min() > 8
    assert background.max() < 3
    twice = ["--face", "0:happy", "--face", "0:sad", "--models", str(tiny_set)]
    refused = CliRunner().invoke(app, ["edit", str(two_faces), *twice])
    assert refused.exit_code == 2 and "face_selected_twice" in refused.output, refused.output
