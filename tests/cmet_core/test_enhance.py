"""The face restorer's stage: options, alignment and its fallback, and whole edits with the tiny restorer.

The tiny restorer's weights follow the kit's fill rule, not training, so these tests check what the
stage promises (sizes, frames, where pixels change, determinism, fallbacks, errors), not sharpness.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.enhance.align import IN_CROP, TEMPLATE, alignments, similarity
from cmet_core.enhance.stage import Enhancer
from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces.geometry import CropBox
from cmet_core.media.sample import write_clip, write_sample_clip
from cmet_core.media.video import probe, read_frames
from cmet_core.modelsets.build import write_set_manifest
from cmet_core.options import EditChoices, Limits, probe_input

HAPPY = EmotionTarget(emotion="happy")
FRAMES = 12


@pytest.fixture(scope="module")
def editor(tiny_set: Path) -> Editor:
    return Editor.load(tiny_set)


@pytest.fixture(scope="module")
def clip(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first frames of the uncropped fixture clip (450x450, the face about 230 px wide)."""
    frames = [f.image for f in read_frames(test_data / "video" / "obama_uncropped.mp4") if f.index < FRAMES]
    return write_clip(tmp_path_factory.mktemp("clip") / "obama12.mp4", lambda i: frames[i], FRAMES)


@pytest.fixture(scope="module")
def edits(editor: Editor, clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    out = tmp_path_factory.mktemp("edits")
    return {
        mode: (out / f"{mode}.mp4", editor.edit(clip, out / f"{mode}.mp4", HAPPY, EditChoices(enhance=mode)))
        for mode in ("off", "on")
    }


def _frames(path: Path) -> np.ndarray:
    return np.stack([f.image for f in read_frames(path)]).astype(np.int16)


def test_options_are_checked() -> None:
    assert EditChoices().enhance == "auto" and EditChoices().enhance_strength == 1.0
    with pytest.raises(ValidationError, match="enhance"):
        EditChoices(enhance="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        EditChoices(enhance_strength=1.5)
    with pytest.raises(ValidationError, match="less than or equal to 2"):
        EditChoices(upscale=4)


def test_similarity_recovers_a_known_transform() -> None:
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity(TEMPLATE, TEMPLATE @ rot.T + shift)
    np.testing.assert_allclose(matrix, np.hstack([rot, shift[:, None]]), atol=1e-9)


def test_landmark_failures_are_bridged_or_aligned_by_the_crop_box() -> None:
    boxes = [CropBox(100.0 + i, 120.0, 200.0) for i in range(5)]
    found = [np.array([b.x0, b.y0]) + (IN_CROP + 0.02) * b.side for b in boxes]
    matrices, missing = alignments([found[0], None, None, found[3], found[4]], boxes, 512, window=1)
    assert missing == 2
    # frames 1 and 2 lie between two frames with the same points relative to their boxes: they get those too
    for i in (1, 2):
        moved = np.hstack([found[i], np.ones((5, 1))]) @ matrices[i].T
        np.testing.assert_allclose(moved, np.hstack([found[0], np.ones((5, 1))]) @ matrices[0].T, atol=1e-6)
    matrices, missing = alignments([None] * 5, boxes, 512)
    assert missing == 5
    prior = np.array([boxes[2].x0, boxes[2].y0]) + IN_CROP * boxes[2].side
    moved = np.hstack([prior, np.ones((5, 1))]) @ matrices[2].T
    assert np.abs(moved - TEMPLATE).max() < 10  # the crop-box alignment puts the face near the template


def test_restored_edit_keeps_frames_size_and_the_frame_around_the_face(edits: dict) -> None:  # type: ignore[type-arg]
    (off_path, off), (on_path, on) = edits["off"], edits["on"]
    assert on.frames == off.frames == probe(on_path).frame_count == FRAMES
    assert (on.width, on.height) == (probe(on_path).width, probe(on_path).height) == (450, 450)
    assert "enhance" in on.stage_seconds and "enhance" not in off.stage_seconds
    a, b = _frames(off_path), _frames(on_path)
    diff = np.abs(a - b).mean(-1)
    # away from the face they differ by one RGB round trip: the plain edit passes the decoder's planes through
    # untouched (`media/yuv.py`), the restorer works on whole RGB frames
    assert diff[:, :60, :60].mean() < 1.5 and diff[:, :60, -60:].mean() < 1.5 and diff[:, -40:, :].mean() < 1.5
    assert diff[:, 170:280, 170:280].mean() > 5.0  # the face was restored


def test_identical_frames_give_identical_restored_faces(editor: Editor, clip: Path) -> None:
    """Fixed noise: the same composited frame at the same alignment comes out the same, in any chunk."""
    assert editor.restorer is not None
    frames = [f.image for f in read_frames(clip)]
    boxes = [CropBox(225.0, 190.0, 400.0)] * len(frames)
    enhancer = Enhancer(editor.restorer, EditChoices(enhance="on"))
    enhancer.prepare(frames, [boxes], lambda *_: None)
    still = [frames[0]] * 3
    enhancer.matrices[0][:3] = [enhancer.matrices[0][0]] * 3
    first = enhancer.apply(still[:2], [0, 1])
    again = enhancer.apply(still[2:], [2])
    assert np.array_equal(first[0], first[1]) and np.array_equal(first[0], again[0])
    assert not np.array_equal(first[0], frames[0])


def test_auto_restores_only_with_weights_and_on_refuses_without(tiny_set: Path, tmp_path: Path, clip: Path) -> None:
    shutil.copytree(tiny_set, tmp_path / "bare", ignore=shutil.ignore_patterns("gfpgan.*"))
    write_set_manifest(tmp_path / "bare", "bare", "0.1.0")
    bare = Editor.load(tmp_path / "bare")
    assert bare.restorer is None
    result = bare.edit(clip, tmp_path / "auto.mp4", HAPPY, EditChoices(enhance="auto"))
    assert "enhance" not in result.stage_seconds
    with pytest.raises(InputError) as err:
        bare.edit(clip, tmp_path / "on.mp4", HAPPY, EditChoices(enhance="on"))
    assert err.value.code == ErrorCode.RESTORER_UNAVAILABLE
    assert not (tmp_path / "on.mp4").exists()


def test_face_crop_input_comes_back_at_twice_the_size(editor: Editor, tmp_path: Path) -> None:
    src = write_sample_clip(tmp_path / "crop.mp4", seconds=0.24)
    result = editor.edit(src, tmp_path / "big.mp4", HAPPY, EditChoices(upscale=2))
    info = probe(tmp_path / "big.mp4")
    assert (info.width, info.height, info.frame_count) == (512, 512, 6) and "enhance" in result.stage_seconds
    plain = _frames(editor.edit(src, tmp_path / "plain.mp4", HAPPY, EditChoices(enhance="off")).output)
    big = _frames(tmp_path / "big.mp4")
    # the corners (far from the face) are the plain edit, doubled
    assert np.abs(big[:, :40:2, :40:2] - plain[:, :20, :20]).mean() < 3.0
    with pytest.raises(InputError) as err:
        wide = write_clip(tmp_path / "wide.mp4", lambda _i: np.zeros((64, 96, 3), np.uint8), 2)
        probe_input(wide, EditChoices(upscale=2), Limits())
    assert err.value.code == ErrorCode.BAD_UPSCALE


def test_no_landmarks_anywhere_falls_back_to_the_crop_box(
    editor: Editor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 256x256 clip without a face: the edit goes through the crop box, and the restorer still works."""
    rng = np.random.default_rng(0)
    texture = rng.integers(60, 200, (256, 256, 3), dtype=np.uint8)
    src = write_clip(tmp_path / "noface.mp4", lambda i: np.roll(texture, i, axis=1), 5)
    with caplog.at_level(logging.INFO, logger="cmet_core"):
        result = editor.edit(src, tmp_path / "out.mp4", HAPPY, EditChoices(enhance="on", upscale=2))
    assert result.frames == 5 and probe(tmp_path / "out.mp4").width == 512
    assert "no landmarks in 5 of 5 frames" in caplog.text


def test_restorer_runtime_options_bf16_and_channels_last() -> None:
    """The generator's switches apply to the restorer too (CPU bf16 autocast here; fp16 needs CUDA)."""
    import torch

    from cmet_core.enhance.restore import RestorerRunner
    from cmet_core.networks.gfpgan import GFPGAN, TINY_GFPGAN
    from cmet_core.networks.runtime import RuntimeOptions
    from cmet_core.verify.fill import fill_module

    net = GFPGAN(TINY_GFPGAN)
    fill_module(net, "gfpgan")
    faces = torch.rand(3, 3, 32, 32) * 2 - 1
    plain = RestorerRunner(net, RuntimeOptions(device="cpu")).restore(faces)
    fast = RestorerRunner(net, RuntimeOptions(device="cpu", precision="bf16", channels_last=True)).restore(faces)
    assert fast.dtype == torch.float32 and fast.shape == plain.shape
    assert (fast - plain).abs().mean() < 0.05
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        RestorerRunner(net, RuntimeOptions(device="cpu", precision="fp16"))


def test_a_dub_is_restored_too(editor: Editor, tmp_path: Path, test_data: Path) -> None:
    """Lips from speech, then the restorer on the composited frame: a face-crop video dubbed at twice its size."""
    import soundfile

    wav, rate = soundfile.read(str(test_data / "video" / "mead_W009_038.wav"), dtype="float32")
    soundfile.write(str(tmp_path / "line.wav"), wav[: rate // 4], rate)  # 0.25 s: 6 frames at 25 fps
    src = write_sample_clip(tmp_path / "crop.mp4", seconds=0.2)
    options = EditChoices(lips="speech", upscale=2)
    result = editor.edit(src, tmp_path / "dub.mp4", HAPPY, options, speech_track=tmp_path / "line.wav")
    info = probe(tmp_path / "dub.mp4")
    assert (info.width, info.height) == (result.width, result.height) == (512, 512)
    assert info.frame_count == result.frames and "enhance" in result.stage_seconds


class _Sized:
    """Just what `wanted` reads of a restorer: its output size."""

    def __init__(self, size: int) -> None:
        self.size = size


def test_auto_restores_where_the_restorer_adds_pixels() -> None:
    """The published pair (a 512 restorer, a 256 generator): a 400 px face is restored, a 200 px one is
    not; a restorer no larger than the generator (the tiny set's 32 and 32) adds nothing: off."""
    from cmet_core.enhance.stage import wanted

    auto = EditChoices()
    assert wanted(auto, _Sized(512), 400.0, 256) and not wanted(auto, _Sized(512), 200.0, 256)  # type: ignore[arg-type]
    assert not wanted(auto, _Sized(32), 400.0, 32)  # type: ignore[arg-type]
    assert wanted(EditChoices(enhance="on"), _Sized(32), 400.0, 32)  # type: ignore[arg-type]
