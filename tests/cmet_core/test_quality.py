"""The quality report on real fixture faces (not on tiny-model noise): identity, lips, the classifier, and
the report of a tiny-model edit; without the quality models an edit keeps its output and says why there is
no report.

The models load once per module (`load` caches them); clips are short cuts of the fixture videos.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmet_core.edit.pipeline import Editor
from cmet_core.emotion.targets import EmotionTarget
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.errors import ErrorCode
from cmet_core.faces.detect import FaceDetector
from cmet_core.media.sample import write_clip
from cmet_core.media.video import read_frames
from cmet_core.quality.assess import QualityConfig, assess, spans_of
from cmet_core.quality.models import CLASSES, ModelFiles, QualityModels, QualityUnavailable, load, packaged
from cmet_core.quality.readings import emotion_crop
from cmet_core.quality.report import IDENTITY_THRESHOLD, Verdict
from cmet_core.stages import Stage

FRAMES = 40


@pytest.fixture(scope="module")
def models() -> QualityModels:
    return load()


def _cut(src: Path, dst: Path, frames: int, reverse: bool = False) -> Path:
    images = [f.image for f in read_frames(src) if f.index < frames]
    order = images[::-1] if reverse else images
    return write_clip(dst, lambda i: order[i], len(order))


@pytest.fixture(scope="module")
def clips(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """1.6 s of a fixture speaker, the same reversed, and another speaker."""
    folder, video = tmp_path_factory.mktemp("quality"), test_data / "video"
    return {
        "mead": _cut(video / "mead_W009_038_cropped.mp4", folder / "mead.mp4", FRAMES),
        "reversed": _cut(video / "mead_W009_038_cropped.mp4", folder / "reversed.mp4", FRAMES, reverse=True),
        "other": _cut(video / "hdtf_RD_Radio1_000_5_cropped.mp4", folder / "other.mp4", FRAMES),
    }


@pytest.fixture(scope="module")
def detector() -> Iterator[FaceDetector]:
    with FaceDetector() as found:
        yield found


@pytest.fixture(scope="module")
def editor(tiny_set: Path) -> Editor:
    return Editor.load(tiny_set)


def _face(models: QualityModels, detector: FaceDetector, image: np.ndarray) -> np.ndarray:
    box = detector.detect(image)[0].box
    return models.descriptor(image, (box.x0, box.y0, box.x1, box.y1))


def _image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _cut_still(image: np.ndarray, path: Path) -> np.ndarray:
    """The image through H.264 and back."""
    write_clip(path, lambda _: image, 1)
    return next(iter(read_frames(path))).image


def test_identity_keeps_one_person_and_tells_two_apart(
    models: QualityModels, detector: FaceDetector, test_data: Path
) -> None:
    frames = {f.index: f.image for f in read_frames(test_data / "video" / "mead_W009_038_cropped.mp4", {0, 100})}
    same = np.linalg.norm(_face(models, detector, frames[0]) - _face(models, detector, frames[100]))
    faces = test_data / "faces"
    people = [
        _face(models, detector, _image(faces / f"{who}_001_identity_source.jpg")) for who in ("W009", "M003", "W015")
    ]
    apart = [np.linalg.norm(a - b) for i, a in enumerate(people) for b in people[i + 1 :]]
    assert same < 0.4
    assert min(apart) > IDENTITY_THRESHOLD


def test_a_clip_against_itself_and_against_its_reverse(clips: dict[str, Path]) -> None:
    itself = assess(clips["mead"], clips["mead"], spans_of("happy", None, 10.0))
    assert itself.identity.mean_distance == pytest.approx(0.0, abs=1e-6)
    assert itself.identity.verdict == Verdict.GOOD
    assert itself.lips.correlation == pytest.approx(1.0)
    assert itself.steadiness.ratio == pytest.approx(1.0)
    assert itself.faces.tracked == 1.0
    assert itself.emotion.segments[0].shift == pytest.approx(0.0)
    assert len(itself.emotion.curve) == itself.sampled_frames
    backwards = assess(clips["mead"], clips["reversed"])
    assert backwards.lips.correlation is not None and backwards.lips.correlation < 0.5
    assert backwards.lips.verdict == Verdict.POOR
    other = assess(clips["mead"], clips["other"])
    assert other.identity.mean_distance is not None and other.identity.mean_distance > IDENTITY_THRESHOLD
    assert other.identity.verdict == Verdict.POOR


def test_the_classifier_gives_a_distribution_that_survives_reencoding(
    models: QualityModels, detector: FaceDetector, test_data: Path, tmp_path: Path
) -> None:
    for name in ("ChatGPT_man_crop.png", "ChatGPT_woman_crop.png", "sydney_crop.png", "ang_crop.png"):
        image = _image(test_data / "faces" / name)
        encoded = _cut_still(image, tmp_path / f"{name}.mp4")
        probabilities = []
        for picture in (image, encoded):
            box = detector.detect(picture)[0].box
            probabilities.append(models.emotion(emotion_crop(picture, box)))
        p, q = probabilities
        assert p.shape == (len(CLASSES),) and (p >= 0).all() and p.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.abs(p - q).max() < 0.1, name


@pytest.fixture(scope="module")
def short(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten frames of the uncropped fixture: the face is found, cropped and pasted back."""
    return _cut(test_data / "video" / "obama_uncropped.mp4", tmp_path_factory.mktemp("short") / "obama.mp4", 10)


def test_a_tiny_edit_returns_every_measure(editor: Editor, short: Path, tmp_path: Path) -> None:
    result = editor.edit(short, tmp_path / "out.mp4", EmotionTarget(emotion="happy"))
    report = result.quality
    assert report is not None and result.quality_problem is None
    assert Stage.QUALITY in result.stage_seconds
    assert report.sampled_frames == 8
    for name, measure in report.measures().items():
        assert measure.line, name
    assert report.identity.frames >= 1
    assert report.faces.tracked + report.faces.bridged + report.faces.missing == pytest.approx(1.0)
    segment = report.emotion.segments[0]
    assert segment.target == "happy" and segment.target_class == "happy"
    assert set(segment.input) == set(CLASSES) and segment.target_in is not None
    assert report.emotion.classes == list(CLASSES)


def test_without_the_quality_models_an_edit_keeps_its_output(
    editor: Editor, short: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(QualityUnavailable) as missing:
        packaged("cmet-no-such-package", "model.tflite")
    assert missing.value.code == ErrorCode.QUALITY_UNAVAILABLE
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if dlib-bin were not installed
    with pytest.raises(QualityUnavailable, match="dlib"):
        QualityModels(ModelFiles.find())
    monkeypatch.setattr(editor, "quality", QualityConfig(emotion_model=tmp_path / "absent.tflite"))
    result = editor.edit(short, tmp_path / "on.mp4", EmotionTarget(emotion="sad"))
    assert result.output.is_file() and result.quality is None
    assert result.quality_problem is not None and result.quality_problem.code == ErrorCode.QUALITY_UNAVAILABLE
    assert result.stage_seconds[Stage.QUALITY] < 1.0


def test_a_timeline_is_judged_segment_by_segment(clips: dict[str, Path]) -> None:
    timeline = ClipTimeline.model_validate(
        {
            "segments": [
                {"start_s": 0, "end_s": 0.8, "target": "happy"},
                {"start_s": 0.8, "end_s": 1.6, "target": "envious"},
            ]
        }
    )
    spans = spans_of(None, timeline, 1.6)
    assert [(s.start_s, s.end_s, s.target) for s in spans] == [(0, 0.8, "happy"), (0.8, 1.6, "envious")]
    report = assess(clips["mead"], clips["mead"], spans)
    happy, envious = report.emotion.segments
    assert happy.target_class == "happy" and happy.shift == pytest.approx(0.0) and happy.input
    assert envious.target_class is None and envious.shift is None and envious.output  # the distribution only
