"""Faces on real frames: detection, tracking, steady crops, paste-back, face choice, missing faces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cmet_core import faces
from cmet_core.errors import InputError
from cmet_core.faces.framing import FACE_DROP_IN_CROP, FACE_WIDTH_IN_CROP
from cmet_core.media.video import MediaError, read_frames

OBAMA_SIZE = (450, 450)
Clip = tuple[list[np.ndarray], list[list[faces.Detection]]]


def _image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


def _outside(box: faces.CropBox, shape: tuple[int, ...]) -> np.ndarray:
    """Pixels that no part of the box touches."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xs < np.floor(box.x0)) | (xs >= np.ceil(box.x1)) | (ys < np.floor(box.y0)) | (ys >= np.ceil(box.y1))


def _det(x0: float, y0: float, x1: float, y1: float, score: float = 0.9, frontal: float = 0.9) -> faces.Detection:
    return faces.Detection(faces.Box(x0, y0, x1, y1), score, frontal)


@pytest.fixture(scope="module")
def detector() -> Iterator[faces.FaceDetector]:
    with faces.FaceDetector() as d:
        yield d


@pytest.fixture(scope="module")
def obama(test_data: Path, detector: faces.FaceDetector) -> Clip:
    frames = [f.image for f in read_frames(test_data / "video" / "obama_uncropped.mp4")]
    return frames, [detector.detect(f) for f in frames]


@pytest.fixture(scope="module")
def obama_boxes(obama: Clip) -> list[faces.CropBox]:
    return faces.crop_boxes(faces.track(obama[1]), OBAMA_SIZE)


@pytest.fixture(scope="module")
def fixture_crops(test_data: Path) -> dict[str, np.ndarray]:
    paths = sorted((test_data / "faces").glob("*_crop.png")) + sorted(
        (test_data / "faces").glob("*_identity_source.jpg")
    )
    return {p.name: _image(p) for p in paths}


def test_one_face_in_every_obama_frame_and_fixture_crop(
    obama: Clip, fixture_crops: dict[str, np.ndarray], detector: faces.FaceDetector
) -> None:
    frames, detections = obama
    assert len(frames) == 500 and all(len(found) == 1 for found in detections)
    assert min(found[0].score for found in detections) > 0.8
    assert len(fixture_crops) >= 10
    for name, image in fixture_crops.items():
        found = detector.detect(image)
        assert len(found) == 1 and found[0].score > 0.8, name
        assert 0.4 < found[0].box.w / 256 < 0.7 and 0 <= found[0].frontal <= 1, name


def test_boxes_are_in_the_pixels_of_the_frame_given(obama: Clip, detector: faces.FaceDetector) -> None:
    import cv2

    frame, small = obama[0][0], obama[1][0][0].box
    big = detector.detect(cv2.resize(frame, (1800, 1800), interpolation=cv2.INTER_CUBIC))  # shrunk to 640 inside
    assert len(big) == 1
    assert big[0].box.iou(faces.Box(small.x0 * 4, small.y0 * 4, small.x1 * 4, small.y1 * 4)) > 0.9


def test_full_range_boxes_are_framed_like_short_range_ones(obama: Clip) -> None:
    with faces.FaceDetector(model="full") as full:
        found = full.detect(obama[0][0])
    assert len(found) == 1 and found[0].box.iou(obama[1][0][0].box) > 0.85


def test_frontal_is_one_for_a_frontal_face_and_drops_as_the_head_turns(
    fixture_crops: dict[str, np.ndarray], detector: faces.FaceDetector
) -> None:
    import cv2

    image = fixture_crops["ChatGPT_man_crop.png"]
    straight = detector.detect(image)[0]
    mirrored = detector.detect(np.ascontiguousarray(image[:, ::-1]))[0]
    nose = round(straight.box.cx)
    # squeezing one half of the face towards the nose is what a turn does to the eye-nose distances
    half = cv2.resize(image[:, :nose], (nose // 2, 256), interpolation=cv2.INTER_AREA)
    turned = detector.detect(np.ascontiguousarray(np.concatenate([half, image[:, nose:]], axis=1)))[0]
    assert straight.frontal > 0.9 and mirrored.frontal > 0.9 and turned.frontal < 0.6


def test_the_face_is_tracked_through_the_whole_uncropped_clip(obama: Clip) -> None:
    tracked = faces.track(obama[1])
    assert all(box is not None for box in tracked)
    assert min(a.iou(b) for a, b in zip(tracked, tracked[1:], strict=False)) > 0.5  # type: ignore[union-attr]


def test_crop_boxes_are_steady_with_one_side(obama: Clip, obama_boxes: list[faces.CropBox]) -> None:
    tracked = faces.track(obama[1])
    assert len(obama_boxes) == 500 and len({b.side for b in obama_boxes}) == 1
    raw = np.abs(np.diff([[t.cx, t.cy] for t in tracked], axis=0)).mean()  # type: ignore[union-attr]
    steady = np.abs(np.diff([[b.cx, b.cy] for b in obama_boxes], axis=0)).mean()
    assert steady < 1.0 and steady < 0.7 * raw


def test_the_crop_frames_the_face_like_the_fixture_crops(
    obama: Clip, obama_boxes: list[faces.CropBox], detector: faces.FaceDetector
) -> None:
    crop = faces.crop_face(obama[0][0], obama_boxes[0])
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    found = detector.detect(crop)
    assert len(found) == 1
    face = found[0].box
    assert abs(face.w / 256 - FACE_WIDTH_IN_CROP) < 0.06
    assert abs(face.cx / 256 - 0.5) < 0.05 and abs(face.cy / 256 - 0.5 - FACE_DROP_IN_CROP) < 0.05


def test_paste_back_of_the_unchanged_crop_gives_back_the_frame(obama: Clip, obama_boxes: list[faces.CropBox]) -> None:
    frame, box = obama[0][0], obama_boxes[0]
    same = faces.paste_back(frame, faces.crop_face(frame, box), box)
    outside = _outside(box, frame.shape)
    assert outside.any() and np.array_equal(same[outside], frame[outside])
    assert _psnr(same[~outside], frame[~outside]) > 30
    assert same is not frame


def test_paste_back_of_a_changed_face_changes_only_the_box(obama: Clip, obama_boxes: list[faces.CropBox]) -> None:
    frame, box = obama[0][0], obama_boxes[0]
    edited = faces.paste_back(frame, np.full((256, 256, 3), 128, np.uint8), box)
    changed = np.any(edited != frame, axis=-1)
    assert changed.any() and not (changed & _outside(box, frame.shape)).any()
    cx, cy = round(box.cx), round(box.cy + FACE_DROP_IN_CROP * box.side)
    assert np.abs(edited[cy - 20 : cy + 20, cx - 20 : cx + 20].astype(int) - 128).max() <= 1
    corner = (round(box.y0) + 2, round(box.x0) + 2)  # the feathered mask is 0 at the crop's border
    assert np.array_equal(edited[corner], frame[corner])


def test_a_face_crop_input_round_trips_exactly() -> None:
    rng = np.random.default_rng(1)
    frame, face = (rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(2))
    whole = faces.CropBox(128, 128, 256)
    assert np.array_equal(faces.crop_face(frame, whole), frame)
    assert np.array_equal(faces.paste_back(frame, face, whole, mask=np.ones((256, 256), np.float32)), face)


def test_crop_face_replicates_the_edge_and_shrinks_without_aliasing() -> None:
    gradient = np.repeat(np.repeat(np.arange(200, dtype=np.uint8)[None, :, None], 100, axis=0), 3, axis=2)
    crop = faces.crop_face(gradient, faces.CropBox(cx=0, cy=50, side=100), size=100)
    assert (crop[:, :45] == 0).all() and crop[:, 60:].min() > 0  # left half lies past the frame: its edge column
    checker = ((np.indices((1024, 1024)).sum(axis=0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    small = faces.crop_face(checker, faces.CropBox(512, 512, 1024))
    assert np.abs(small.astype(int) - 128).max() <= 2  # 4x shrink of a 1 px checkerboard: flat grey, no moire
    ones = np.ones((256, 256), np.float32)
    pasted = faces.paste_back(np.zeros((300, 300, 3), np.uint8), checker[:256, :256], faces.CropBox(150, 150, 64), ones)
    assert np.abs(pasted[130:170, 130:170].astype(int) - 128).max() <= 3


def test_feather_mask_is_one_on_the_face_and_zero_at_the_border() -> None:
    mask = faces.feather_mask()
    assert mask.shape == (256, 256) and mask.dtype == np.float32
    centre = round(256 * (0.5 + FACE_DROP_IN_CROP))
    assert mask[centre - 45 : centre + 45, 128 - 45 : 128 + 45].min() == pytest.approx(1.0)
    assert mask[0].max() == 0 and mask[-1].max() == 0 and mask[:, 0].max() == 0 and mask[:, -1].max() == 0
    assert mask[128, 10] < 0.05  # beside the face (hair, background) the input stays
    ramp = lambda m: ((m > 0.05) & (m < 0.95)).mean()  # noqa: E731
    assert 0.05 < ramp(mask) and ramp(faces.feather_mask(margin=0.1)) < ramp(mask) < ramp(
        faces.feather_mask(margin=0.5)
    )
    with pytest.raises(ValueError):
        faces.feather_mask(margin=0)


def test_no_face_error_names_the_frame_ranges(obama: Clip, detector: faces.FaceDetector) -> None:
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (450, 450, 3), dtype=np.uint8) for _ in range(10)]
    grey = np.full((450, 450, 3), 128, np.uint8)
    clip = noise + obama[0][:30] + [grey] + obama[0][30:39]
    tracked = faces.track([detector.detect(f) for f in clip])  # random pixels give the odd spurious 20 px "face"
    with pytest.raises(faces.NoFaceError) as caught:
        faces.crop_boxes(tracked, OBAMA_SIZE)
    error = caught.value
    assert isinstance(error, MediaError) and error.code == "no_face" and error.frames == [(0, 9), (40, 40)]
    assert "no face found in frames 0-9, 40 (11 of 50 frames; at most 10% may miss)" in str(error)
    bridged = faces.crop_boxes(tracked, OBAMA_SIZE, max_missing=0.25)
    assert len(bridged) == 50 and bridged[0] == bridged[5]  # held from the first frame with the face
    with pytest.raises(faces.NoFaceError, match="frames 0-4 "):
        faces.crop_boxes([None] * 5, OBAMA_SIZE, max_missing=1.0)


def test_face_index_and_box_pick_the_face(fixture_crops: dict[str, np.ndarray], detector: faces.FaceDetector) -> None:
    canvas = np.full((400, 700, 3), 90, np.uint8)
    canvas[72:328, 40:296] = fixture_crops["ChatGPT_man_crop.png"]
    canvas[72:328, 404:660] = fixture_crops["ChatGPT_woman_crop.png"]
    detections = [detector.detect(canvas)] * 3
    assert len(detections[0]) == 2
    right = faces.track(detections, faces.FaceSelection(index=1))
    left = faces.track(detections, faces.FaceSelection(index=0))
    assert all(b is not None and b.cx > 350 for b in right) and all(b is not None and b.cx < 350 for b in left)
    assert faces.track(detections, faces.FaceSelection(box=faces.Box(380, 50, 700, 350))) == right
    assert faces.track(detections, faces.FaceSelection(box=faces.Box(0, 0, 300, 400))) == left
    for wrong in (faces.FaceSelection(index=2), faces.FaceSelection(box=faces.Box(300, 0, 340, 30))):
        with pytest.raises(InputError) as caught:
            faces.track(detections, wrong)
        assert caught.value.code == "bad_face_selection"


def test_the_default_face_is_the_largest_most_central_one() -> None:
    big_at_edge, centred = _det(0, 100, 220, 320), _det(410, 135, 590, 315)
    detections = [[big_at_edge, centred]] * 3
    assert faces.track(detections) == [big_at_edge.box] * 3
    assert faces.track(detections, frame_size=(1000, 450)) == [centred.box] * 3


def test_is_face_crop() -> None:
    assert faces.is_face_crop(256, 256)
    assert not faces.is_face_crop(450, 450) and not faces.is_face_crop(256, 255)


def test_select_source_frame_takes_a_confident_frontal_face(obama: Clip) -> None:
    detections = obama[1]
    tracked = faces.track(detections)
    index = faces.select_source_frame(detections, tracked)
    chosen = next(d for d in detections[index] if d.box == tracked[index])
    assert chosen.frontal >= 0.8 and chosen.score >= 0.75
    turned = [[_det(0, 0, 10, 10, frontal=f)] for f in (0.3, 0.6, 0.5)]
    boxes = [found[0].box for found in turned]
    assert faces.select_source_frame(turned, boxes) == 1  # none frontal enough: the most frontal
    assert faces.select_source_frame([*turned, [_det(0, 0, 10, 10, frontal=0.95)]], [*boxes, boxes[0]]) == 3
