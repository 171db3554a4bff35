"""The one frame loop: every composited frame of an edit, a dub and a contact sheet reaches the per-frame
stages once, in order, with the input frame it was composited on; and the sheet's cells get `enhance`.

A recording stage is plugged into a tiny-set editor's stage factories, as a new stage would be.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile

from cmet_core.edit.frame_stages import DEFAULT_STAGES, FrameStage, Progress, StageContext
from cmet_core.edit.lips import plan
from cmet_core.edit.pipeline import Editor
from cmet_core.edit.preview import contact_sheet
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.enhance.stage import Enhancer
from cmet_core.faces.geometry import CropBox
from cmet_core.media.sample import write_clip, write_sample_clip
from cmet_core.media.video import read_frames
from cmet_core.options import EditChoices, Limits, SheetChoice
from tests.media_factory import make_video

HAPPY = EmotionTarget(emotion="happy")
FRAMES = 12


class Recorder:
    """A stage that changes nothing and keeps what it saw (named outside `Stage`: it never runs in a job)."""

    name = "record"

    def __init__(self) -> None:
        self.prepared: list[tuple[int, list[CropBox]]] = []
        self.images: list[np.ndarray] = []
        self.indices: list[int] = []
        self.chunks = 0

    def prepare(
        self,
        images: Iterable[np.ndarray],
        tracks: Sequence[Sequence[CropBox]],
        progress: Progress,
        shown: Sequence[np.ndarray] | None = None,
    ) -> None:
        assert shown is None or len(shown) == len(tracks)
        self.prepared.append((sum(1 for _ in images), list(tracks[0])))
        progress("record", 1, 1)

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width, height

    def apply(self, images: list[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
        self.images += [image.copy() for image in images]
        self.indices += list(indices)
        self.chunks += 1
        return images


@pytest.fixture
def recorded(tiny_set: Path) -> tuple[Editor, list[Recorder]]:
    """An editor whose stages end with a fresh `Recorder` per edit (the list holds them)."""
    editor = Editor.load(tiny_set)
    made: list[Recorder] = []

    def record(_context: StageContext) -> FrameStage:
        made.append(Recorder())
        return made[-1]

    editor.stages = (*DEFAULT_STAGES, record)
    return editor, made


@pytest.fixture(scope="module")
def clip(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first frames of the uncropped fixture clip: the face is pasted back into a real background."""
    frames = [f.image for f in read_frames(test_data / "video" / "obama_uncropped.mp4") if f.index < FRAMES]
    return write_clip(tmp_path_factory.mktemp("clip") / "obama12.mp4", lambda i: frames[i], FRAMES)


def _decoded(path: Path) -> list[np.ndarray]:
    return [f.image for f in read_frames(path)]


def test_an_edit_passes_every_frame_once_in_order(recorded: tuple[Editor, list[Recorder]], clip: Path) -> None:
    editor, made = recorded
    out = clip.parent / "edited.mp4"
    stages: list[str] = []
    result = editor.edit(clip, out, HAPPY, progress=lambda s, _d, _t: stages.append(s), limits=Limits(chunk_frames=5))
    (stage,) = made
    assert stage.indices == list(range(FRAMES)) and stage.chunks == 3  # chunks of 5, 5, 2
    assert stage.prepared[0][0] == FRAMES and len(stage.prepared[0][1]) == FRAMES  # every input frame, every box
    inputs, written = _decoded(clip), _decoded(out)
    for seen, before, after in zip(stage.images, inputs, written, strict=True):
        # composited onto its own input frame (bit-identical away from the face), then written as it left the stage
        assert np.array_equal(seen[:60, :60], before[:60, :60]) and np.array_equal(seen[:60, -60:], before[:60, -60:])
        assert np.abs(seen.astype(np.int16) - after).mean() < 2.0
    assert "record" in stages and result.stage_seconds["record"] >= 0
    assert set(result.stage_seconds) == {"faces", "encode", "expression", "render", "record", "quality"}


def test_a_clip_preview_passes_its_window(recorded: tuple[Editor, list[Recorder]], clip: Path) -> None:
    """Frames 4-8 of the clip (0.16-0.36 s): the stage sees the window's frames, indexed within the window."""
    editor, made = recorded
    inputs = _decoded(clip)
    result = editor.edit(clip, clip.parent / "window.mp4", HAPPY, EditChoices(preview_s=0.2, preview_start_s=0.16))
    (stage,) = made
    assert result.frames == 5 and stage.indices == list(range(5)) and stage.prepared[0][0] == 5
    for seen, before in zip(stage.images, inputs[4:9], strict=True):
        assert np.array_equal(seen[:60, :60], before[:60, :60])  # the window's cut is lossless


def test_a_dub_passes_its_frames_in_plan_order(
    recorded: tuple[Editor, list[Recorder]], test_data: Path, tmp_path: Path
) -> None:
    """A 6-frame video under 0.5 s of speech: 12 output frames, the pose source bounced (0..5, 4..0, 1)."""
    editor, made = recorded
    src = make_video(tmp_path / "short.mp4", frames=6, size=(256, 256))
    wav, rate = soundfile.read(str(test_data / "video" / "mead_W009_038.wav"), dtype="float32")
    soundfile.write(str(tmp_path / "line.wav"), wav[: rate // 2], rate)
    options, limits = EditChoices(lips="speech"), Limits(chunk_frames=5)
    result = editor.edit(src, tmp_path / "dub.mp4", HAPPY, options, speech_track=tmp_path / "line.wav", limits=limits)
    (stage,) = made
    times = np.array([f.time_s for f in read_frames(src)])
    expected = [f.background for f in plan(times, 12, "bounce", photo=False)]
    assert expected == [0, 1, 2, 3, 4, 5, 4, 3, 2, 1, 0, 1]
    assert stage.indices == expected and result.frames == 12 and stage.chunks == 3
    assert stage.prepared[0][0] == 6 and len(stage.prepared[0][1]) == 6
    written = _decoded(tmp_path / "dub.mp4")
    assert len(written) == len(stage.images) == 12
    # each written frame is the one the stage saw at its place (the tiny model's noisy faces encode lossily)
    diff = np.array([[np.abs(seen.astype(np.int16) - after).mean() for seen in stage.images] for after in written])
    assert (diff.argmin(1) == np.arange(12)).all() and diff.diagonal().max() < 5.0


def test_a_sheet_passes_each_cell_once(recorded: tuple[Editor, list[Recorder]], clip: Path) -> None:
    editor, made = recorded
    choice = SheetChoice(emotions=("happy", "sad"), intensities=(0.0, 1.0))
    sheet = contact_sheet(editor, clip, choice)
    (stage,) = made
    # one image per rendered row: the frame's own expression, then each edited cell, all on input frame 0
    assert stage.indices == [0, 0, 0] and stage.chunks == 1
    assert stage.prepared == [(1, [sheet.box])]
    assert np.array_equal(stage.images[0], sheet.rows[0][0].image)
    assert np.array_equal(stage.images[1], sheet.rows[0][1].image)
    assert np.array_equal(stage.images[2], sheet.rows[1][1].image)
    assert "record" in sheet.stage_seconds


def test_a_sheet_is_enhanced_when_the_edit_would_be(tiny_set: Path, clip: Path) -> None:
    """enhance on: each cell is the plain cell with the restorer's stage applied, prepared from the sheet's frame."""
    editor = Editor.load(tiny_set)
    assert editor.restorer is not None
    choice = SheetChoice(emotions=("happy", "sad"), intensities=(0.0, 1.0))
    plain = contact_sheet(editor, clip, choice, EditChoices(enhance="off"))
    on = EditChoices(enhance="on")
    restored = contact_sheet(editor, clip, choice, on)
    assert "enhance" in restored.stage_seconds and "enhance" not in plain.stage_seconds
    assert restored.box == plain.box and restored.frame == plain.frame
    frame = _decoded(clip)[restored.frame]
    enhancer = Enhancer(editor.restorer, on)
    enhancer.prepare([frame], [[restored.box]], lambda *_: None)
    expected = enhancer.apply([cell.image for cell in plain.cells], [0] * len(plain.cells))
    for cell, want, before in zip(restored.cells, expected, plain.cells, strict=True):
        assert np.array_equal(cell.image, want)
        assert not np.array_equal(cell.image, before.image)  # the face was restored
        assert np.array_equal(cell.image[:60, :60], before.image[:60, :60])  # the frame around it was not


def test_an_upscaled_sheet_keeps_its_box_on_the_face(tiny_set: Path, tmp_path: Path) -> None:
    """upscale 2 (a face crop): the cells come back at twice the size, and the sheet's crop box follows them."""
    editor = Editor.load(tiny_set)
    src = write_sample_clip(tmp_path / "crop.mp4", seconds=0.24)
    choice = SheetChoice(emotions=("happy",), intensities=(1.0,))
    plain = contact_sheet(editor, src, choice, EditChoices(enhance="off"))
    big = contact_sheet(editor, src, choice, EditChoices(upscale=2))
    assert big.rows[0][0].image.shape == (512, 512, 3) and plain.rows[0][0].image.shape == (256, 256, 3)
    assert (big.box.cx, big.box.cy, big.box.side) == (2 * plain.box.cx, 2 * plain.box.cy, 2 * plain.box.side)
    assert (big.box.x0, big.box.y0, big.box.x1, big.box.y1) == (0, 0, 512, 512)  # the whole (upscaled) crop
