"""Previews on tiny models: the contact sheet (grid, labels, cells, intensity 0) and the clip window (frames, audio).

Tiny models render 32x32 faces from random weights: the tests check what a preview promises (geometry,
labels, which cells differ, what stays the input's own), not how the faces look.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from cmet_core import faces
from cmet_core.edit.pipeline import Editor
from cmet_core.edit.preview import CELL, HEADER_H, LABEL_W, ContactSheet, contact_sheet
from cmet_core.edit.window import cut
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.audio import load_audio
from cmet_core.media.images import to_images, to_tensor
from cmet_core.media.sample import write_sample_clip
from cmet_core.media.video import probe, read_frames
from cmet_core.options import EditChoices, Limits, SheetChoice
from tests.media_factory import make_video, retime

EMOTIONS = ("happy", "sad", "sarcastic")
INTENSITIES = (0.0, 0.5, 1.0, 1.5)


@pytest.fixture(scope="module")
def editor(tiny_set: Path) -> Editor:
    return Editor.load(tiny_set)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_clip(tmp_path_factory.mktemp("preview") / "talk.mp4", seconds=3.0)


@pytest.fixture(scope="module")
def sheet(editor: Editor, clip: Path) -> ContactSheet:
    return contact_sheet(editor, clip, SheetChoice(emotions=EMOTIONS, intensities=INTENSITIES, frame=30))


def test_grid_has_a_cell_per_emotion_and_intensity_and_labels(sheet: ContactSheet, tmp_path: Path) -> None:
    path = sheet.save(tmp_path / "sheet.png")
    with Image.open(path) as png:
        assert png.size == (LABEL_W + len(INTENSITIES) * CELL, HEADER_H + len(EMOTIONS) * CELL)
        assert json.loads(png.text["cmet:emotions"]) == list(EMOTIONS)
        assert json.loads(png.text["cmet:intensities"]) == list(INTENSITIES)
        assert png.text["cmet:frame"] == "30"
        grid = np.asarray(png.convert("RGB")).astype(np.int16)
    background = np.array([24, 24, 24])
    # every row label and column header is drawn (ink on the background), and no two rows' labels are alike
    labels = [grid[HEADER_H + i * CELL : HEADER_H + (i + 1) * CELL, :LABEL_W] for i in range(len(EMOTIONS))]
    headers = [grid[:HEADER_H, LABEL_W + j * CELL : LABEL_W + (j + 1) * CELL] for j in range(len(INTENSITIES))]
    for area in labels + headers:
        assert (np.abs(area - background).sum(-1) > 100).sum() > 20
    assert all(not np.array_equal(a, b) for k, a in enumerate(labels) for b in labels[k + 1 :])
    # each cell is the face's crop of its edited frame
    cell = grid[HEADER_H : HEADER_H + CELL, LABEL_W + CELL : LABEL_W + 2 * CELL]
    expected = faces.crop_face(sheet.rows[0][1].image, sheet.box, CELL)
    assert np.array_equal(cell, expected)


def test_single_images_are_whole_frames_one_per_cell(sheet: ContactSheet, clip: Path, tmp_path: Path) -> None:
    paths = sheet.save_cells(tmp_path / "cells")
    info = probe(clip)
    assert len(paths) == len(EMOTIONS) * len(INTENSITIES) == len({p.name for p in paths})
    assert paths[1].name == "00-01-happy-0.5.png"
    with Image.open(paths[-1]) as png:
        assert png.size == (info.width, info.height)
        assert np.array_equal(np.asarray(png), sheet.rows[-1][-1].image)


def test_cells_differ_by_emotion_and_intensity(sheet: ContactSheet) -> None:
    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())

    for j in range(1, len(INTENSITIES)):
        column = [row[j].image for row in sheet.rows]
        assert all(diff(a, b) > 0 for k, a in enumerate(column) for b in column[k + 1 :])
    for row in sheet.rows:
        assert diff(row[1].image, row[3].image) > 0


def _unedited(editor: Editor, clip: Path, index: int, source_index: int, box: faces.CropBox) -> np.ndarray:
    """Frame `index` re-rendered with its own expression coefficients (delta zero), pasted back."""
    frames = {f.index: f.image for f in read_frames(clip) if f.index in (index, source_index)}
    size = editor.face_size
    motion = editor.backbone.encode(to_tensor([faces.crop_face(frames[index], box, size)]))
    source = editor.backbone.prepare_source(to_tensor([faces.crop_face(frames[source_index], box, size)]))
    face = to_images(editor.backbone.render(source, motion))[0]
    return faces.paste_back(frames[index], face, box, mask=faces.paste_mask(size, crop_input=True))


def test_intensity_zero_is_the_unedited_frame(sheet: ContactSheet, editor: Editor, clip: Path) -> None:
    """The frame re-rendered with its own expression coefficients (delta zero), whatever the emotion."""
    zero = [row[0].image for row in sheet.rows]
    assert all(np.array_equal(zero[0], z) for z in zero[1:])
    assert np.array_equal(zero[0], _unedited(editor, clip, 30, sheet.source_frame, sheet.box))


def test_a_cell_is_the_frame_after_the_connector_settled_on_it(editor: Editor) -> None:
    """The batched settle of every cell equals the pipeline's expression track over a second of the still frame."""
    from cmet_core.edit.expression import expression_track
    from cmet_core.edit.preview import SETTLE_S, Sheet

    exp = torch.randn(1, 10, generator=torch.Generator().manual_seed(0))
    vectors = [editor.vector(EmotionTarget(emotion=e)) for e in EMOTIONS]
    choice = SheetChoice(emotions=EMOTIONS)
    sheet = Sheet(editor, Path("unused"), choice, EditChoices(), Limits(), None, lambda *_: None)
    batched = sheet.settled(exp, vectors)
    steps = round(SETTLE_S * 25)
    for row, vector in zip(batched, vectors, strict=True):
        speech = torch.from_numpy(vector).reshape(1, 1, -1)
        with torch.inference_mode():
            track = expression_track(editor.connector, exp.repeat(steps, 1), np.arange(steps) / 25, speech)
        torch.testing.assert_close(row, track[-1], rtol=1e-5, atol=1e-5)


def test_default_frame_is_the_identity_source_frame(editor: Editor, clip: Path) -> None:
    """Encoded once: the source's own encoding gives the frame's motion, as encoding the frame again would."""
    choice = SheetChoice(emotions=("happy",), intensities=(0.0, 1.0))
    sheet = contact_sheet(editor, clip, choice, EditChoices(source_frame=7))
    assert sheet.frame == sheet.source_frame == 7
    assert np.array_equal(sheet.rows[0][0].image, _unedited(editor, clip, 7, 7, sheet.box))


def test_uncropped_input_keeps_its_pixels_away_from_the_face(editor: Editor, test_data: Path) -> None:
    src = test_data / "video" / "obama_uncropped.mp4"
    sheet = contact_sheet(editor, src, SheetChoice(emotions=("angry",), intensities=(1.0,)))
    frame = next(f.image for f in read_frames(src) if f.index == sheet.frame)
    edited = sheet.rows[0][0].image
    assert edited.shape == frame.shape
    assert np.array_equal(edited[:60, :60], frame[:60, :60])
    x0, y0, x1, y1 = (round(v) for v in (sheet.box.x0, sheet.box.y0, sheet.box.x1, sheet.box.y1))
    assert np.abs(edited[y0:y1, x0:x1].astype(np.int16) - frame[y0:y1, x0:x1]).mean() > 5


def test_bad_sheets_are_refused_with_codes(editor: Editor, clip: Path) -> None:
    with pytest.raises(InputError) as outside:
        contact_sheet(editor, clip, SheetChoice(emotions=("happy",), frame=75))
    assert outside.value.code == ErrorCode.BAD_PREVIEW_FRAME
    with pytest.raises(InputError) as unknown:
        contact_sheet(editor, clip, SheetChoice(emotions=("happy", "not-an-emotion")))
    assert unknown.value.code == ErrorCode.UNKNOWN_EMOTION
    for bad in (
        {"emotions": []},
        {"emotions": ["happy", "happy"]},
        {"emotions": ["happy"], "intensities": [1, 1]},
        {"emotions": ["happy"], "intensities": [2.5]},
        {"emotions": [f"e{i}" for i in range(9)]},
    ):
        with pytest.raises(ValidationError):
            SheetChoice.model_validate(bad)


def _correlation(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """The lag (samples) of `a` against `b` where they correlate best, and that normalised correlation."""
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    lags = range(-400, 401)
    scores = [float(np.dot(a[max(0, k) : n + min(0, k)], b[max(0, -k) : n - max(0, k)])) for k in lags]
    best = int(np.argmax(scores))
    return lags[best], scores[best] / float(np.linalg.norm(a) * np.linalg.norm(b))


def test_clip_preview_renders_only_its_window_with_its_audio(editor: Editor, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview.mp4"
    options = EditChoices(preview_s=1.0, preview_start_s=0.6)
    result = editor.edit(clip, out, EmotionTarget(emotion="happy"), options)
    info = probe(out)
    assert result.frames == info.frame_count == 25
    assert abs(info.duration_s - 1.0) < 0.05 and info.fps == 25 and info.has_audio
    heard = load_audio(out)
    source = load_audio(clip)[round(0.6 * 16000) : round(1.6 * 16000)]
    assert abs(len(heard) - len(source)) < 0.05 * 16000
    lag, score = _correlation(heard, source)
    assert abs(lag) < 0.01 * 16000 and score > 0.9, (lag, score)
    assert not list(tmp_path.glob(".cmet-window-*"))  # the window's cut is gone


def test_clip_preview_keeps_an_explicit_source_frame(editor: Editor, clip: Path, tmp_path: Path) -> None:
    options = EditChoices(preview_s=0.4, preview_start_s=1.0, source_frame=27)
    result = editor.edit(clip, tmp_path / "p.mp4", EmotionTarget(emotion="sad"), options)
    assert result.source_frame == 27 and result.frames == 10


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (EditChoices(preview_s=1.0, preview_start_s=3.0), ErrorCode.BAD_PREVIEW_WINDOW),
        (EditChoices(preview_s=1.0, preview_start_s=0.5, source_frame=2), ErrorCode.BAD_PREVIEW_WINDOW),
    ],
)
def test_bad_windows_are_refused_with_codes(
    editor: Editor, clip: Path, tmp_path: Path, options: EditChoices, code: ErrorCode
) -> None:
    with pytest.raises(InputError) as refused:
        editor.edit(clip, tmp_path / "p.mp4", EmotionTarget(emotion="sad"), options)
    assert refused.value.code == code
    assert not (tmp_path / "p.mp4").exists()


def test_window_options_are_validated() -> None:
    for bad in ({"preview_s": 0}, {"preview_s": 31}, {"preview_s": 1, "preview_start_s": -1}, {"preview_start_s": 2}):
        with pytest.raises(ValidationError):
            EditChoices.model_validate(bad)


RETIMED = {
    # frames at the real rate, the last one held to the cut: the declared average rate is below the real one
    "trimmed 25 fps": [i / 25 for i in range(49)] + [50 / 25],
    "trimmed 24 fps": [i / 24 for i in range(47)] + [49 / 24],
    "trimmed 30000/1001 fps": [i * 1001 / 30000 for i in range(59)] + [61 * 1001 / 30000],
    "variable rate": [float(t) for t in np.cumsum([0.0] + [0.02 if i % 3 else 0.1 for i in range(59)])],
}


@pytest.mark.parametrize("times", RETIMED.values(), ids=RETIMED.keys())
def test_windows_keep_every_timestamp_of_trimmed_and_variable_rate_clips(tmp_path: Path, times: list[float]) -> None:
    src = retime(make_video(tmp_path / "src.mp4", frames=len(times)), tmp_path / "clip.mp4", times)
    info = probe(src)
    for start, length in ((0.0, 1.5), (0.3, 1.7)):
        window = cut(src, tmp_path / f"w{start}.mov", info, start, length)
        kept = [t for t in times if start - 1e-6 <= t < start + length - 1e-6]
        got = [f.time_s for f in read_frames(window.path)]
        assert window.frames == len(kept) and np.allclose(got, np.array(kept) - kept[0], atol=1e-4), (got, kept)


def test_clip_preview_of_a_clip_trimmed_by_stream_copy(editor: Editor, tmp_path: Path) -> None:
    times = RETIMED["trimmed 25 fps"]
    src = retime(write_sample_clip(tmp_path / "talk.mp4", seconds=2.0), tmp_path / "trimmed.mp4", times)
    assert probe(src).fps < 25  # declared 24.51
    out = tmp_path / "preview.mp4"
    result = editor.edit(src, out, EmotionTarget(emotion="happy"), EditChoices(preview_s=1.2, preview_start_s=0.4))
    assert result.frames == probe(out).frame_count == sum(0.4 <= t < 1.6 for t in times) == 30
    assert probe(out).has_audio
