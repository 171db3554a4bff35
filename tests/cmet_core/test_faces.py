"""Faces on real frames: detection, tracking, steady crops, paste-back, face choice, missing faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmet_core import faces
from cmet_core.errors import InputError
from cmet_core.media.video import read_frames


def _read(path: Path, limit: int | None = None) -> list[np.ndarray]:
    out = []
    for frame in read_frames(path):
        out.append(frame.image)
        if limit is not None and len(out) == limit:
            break
    return out


def _image(path: Path) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    with faces.FaceDetector() as d:
        yield d


@pytest.fixture(scope="module")
def obama(test_data: Path, detector) -> tuple[list[np.ndarray], list[list[faces.Detection]]]:  # type: ignore[no-untyped-def]
    frames = _read(test_data / "video" / "obama_uncropped.mp4")
    return frames, [detector.detect(f) for f in frames]


def test_one_face_in_each_fixture_crop(test_data: Path, detector) -> None:  # type: ignore[no-untyped-def]
    crops = sorted((test_data / "faces").glob("*_crop.png")) + sorted((test_data / "faces").glob("*_identity_source.jpg"))
    assert len(crops) >= 10
    for path in crops:
        found = detector.detect(_image(path))
        assert len(found) == 1 and found[0].score > 0.8, path.name
        # calibration: a face crop frames the face as our crops do
        assert 0.4 < found[0].box.w / 256 < 0.7, path.name


def test_the_face_is_tracked_through_the_whole_uncropped_clip(obama) -> None:  # type: ignore[no-untyped-def]
    frames, detections = obama
    assert len(frames) == 500
    tracked = faces.track(detections, (450, 450))
    assert all(box is not None for box in tracked)


def test_crop_boxes_are_steady_with_one_side(obama) -> None:  # type: ignore[no-untyped-def]
    frames, detections = obama
    tracked = faces.track(detections, (450, 450))
    boxes = faces.crop_boxes(tracked)
    assert len({b.side for b in boxes}) == 1
    raw = np.abs(np.diff([t.cx for t in tracked if t is not None])).mean()
    steady = np.abs(np.diff([b.cx for b in boxes])).mean()
    assert steady < 1.0 and steady < raw
    # the crop is framed like EDTalk's: the detector finds a face of the calibrated size in it
    crop = faces.crop_face(frames[0], boxes[0])
    assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
    with faces.FaceDetector() as d:
        found = d.detect(crop)
    assert len(found) == 1 and abs(found[0].box.w / 256 - faces.boxes.FACE_WIDTH_IN_CROP) < 0.08


def test_paste_back_changes_only_the_face_region(obama) -> None:  # type: ignore[no-untyped-def]
    frames, detections = obama
    box = faces.crop_boxes(faces.track(detections[:10], (450, 450)))[0]
    frame = frames[0]
    same = faces.paste_back(frame, faces.crop_face(frame, box), box)
    mse = ((same.astype(float) - frame) ** 2).mean()
    assert 10 * np.log10(255**2 / mse) > 30
    grey = np.full((256, 256, 3), 128, np.uint8)
    edited = faces.paste_back(frame, grey, box)
    changed = np.any(edited != frame, axis=-1)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= np.floor(box.x0) and xs.max() <= np.ceil(box.x0 + box.side)
    assert ys.min() >= np.floor(box.y0) and ys.max() <= np.ceil(box.y0 + box.side)
    centre = edited[int(box.cy) - 5 : int(box.cy) + 5, int(box.cx) - 5 : int(box.cx) + 5]
    assert np.abs(centre.astype(int) - 128).max() <= 1


def test_feather_mask_is_one_on_the_face_and_zero_at_the_border() -> None:
    mask = faces.feather_mask(256)
    assert mask[140, 128] == pytest.approx(1.0) and mask[0].max() == 0 and mask[:, 0].max() == 0
    assert mask[128, 30] < 0.1 and ((mask > 0.05) & (mask < 0.95)).mean() > 0.05  # a ramp, not a step


def _two_faces(test_data: Path) -> np.ndarray:
    left = _image(test_data / "faces" / "ChatGPT_man_crop.png")
    right = _image(test_data / "faces" / "ChatGPT_woman_crop.png")
    canvas = np.full((400, 700, 3), 90, np.uint8)
    canvas[72:328, 40:296] = left
    canvas[72:328, 404:660] = right
    return canvas


def test_face_index_and_box_pick_the_face(test_data: Path, detector) -> None:  # type: ignore[no-untyped-def]
    canvas = _two_faces(test_data)
    detections = [detector.detect(canvas)] * 3
    assert len(detections[0]) == 2
    right = faces.track(detections, (700, 400), faces.FaceSelection(index=1))
    assert all(b is not None and b.cx > 350 for b in right)
    left = faces.track(detections, (700, 400), faces.FaceSelection(box=faces.Box(0, 0, 300, 400)))
    assert all(b is not None and b.cx < 350 for b in left)
    with pytest.raises(InputError) as caught:
        faces.track(detections, (700, 400), faces.FaceSelection(index=2))
    assert caught.value.code == "bad_face_selection"


def test_no_face_names_the_frame_ranges() -> None:
    box = faces.Box(100, 100, 200, 200)
    track = [None] * 10 + [box] * 30 + [None] + [box] * 9
    with pytest.raises(faces.NoFaceError) as caught:
        faces.crop_boxes(track)
    assert caught.value.code == "no_face" and caught.value.frames == [(0, 9), (40, 40)]
    assert "frames 0-9, 40" in str(caught.value) and "11 of 50" in str(caught.value)
    bridged = faces.crop_boxes(track, max_missing=0.25)
    assert len(bridged) == 50
    with pytest.raises(faces.NoFaceError):
        faces.crop_boxes([None] * 5, max_missing=1.0)


def test_face_crop_inputs_and_source_frame(obama) -> None:  # type: ignore[no-untyped-def]
    assert faces.is_face_crop(256, 256) and not faces.is_face_crop(450, 450)
    _, detections = obama
    tracked = faces.track(detections, (450, 450))
    index = faces.select_source_frame(detections, tracked)
    chosen = next(d for d in detections[index] if d.box == tracked[index])
    assert chosen.frontal >= 0.7 and chosen.score >= 0.85
