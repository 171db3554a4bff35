"""The face pass of an edit or a preview: detect in every frame, follow one face, choose the identity frame.

One implementation for the edit pipeline and the contact sheet, so a preview crops the face, and takes
its identity from the frame, exactly as the full edit will.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces.detect import MAX_DETECT_SIDE, Detection, FaceDetector
from cmet_core.faces.framing import crop_boxes
from cmet_core.faces.geometry import Box, CropBox
from cmet_core.faces.track import FaceSelection, select_source_frame, track, track_many
from cmet_core.media.overlap import prefetched
from cmet_core.media.video import VideoInfo, read_frames
from cmet_core.meter import metered, step

PREFETCH_FRAMES = 8
"""Small frames the decoder thread may run ahead of detection."""

LEAVE_S = 0.5
"""Of several faces, one missing for longer than this has left the frame: it is left alone until it is back;
shorter gaps are bridged as a single face's are."""


@dataclass(frozen=True)
class FacePlan:
    """Every frame's crop box, the frame whose face gives the identity, and which frames showed the face
    (the others' boxes are bridged; an expression reference averages only the frames that showed it)."""

    boxes: list[CropBox]
    source_index: int
    seen: tuple[bool, ...] = ()


@dataclass(frozen=True)
class TrackedFace:
    """One of several faces: its crop box in every frame (bridged across gaps), where it is there to edit, the
    boxes it was detected at, its identity frame and its place from the left where the faces were chosen."""

    boxes: list[CropBox]
    present: np.ndarray
    """(frames,) bool: found, or missing no longer than `LEAVE_S`."""
    detected: list[Box | None]
    source_index: int
    label: int


def _decoded_small(src: Path, limit: int | None) -> Iterable[np.ndarray]:
    decoded = itertools.islice(read_frames(src, max_side=MAX_DETECT_SIDE), limit)
    return prefetched((frame.image for frame in metered("decode faces", decoded)), PREFETCH_FRAMES)


def _detect_all(
    images: Iterable[np.ndarray], size: tuple[int, int], progress: Callable[[int], None]
) -> list[list[Detection]]:
    detections: list[list[Detection]] = []
    with FaceDetector() as detector:
        for image in images:
            with step("detect faces"):
                detections.append(detector.detect(image, size))
            progress(len(detections))
    return detections


def find_many_faces(
    src: Path,
    info: VideoInfo,
    selections: list[FaceSelection],
    *,
    candidates: bool,
    max_candidates: int,
    source_frame: int | None,
    progress: Callable[[int, int], None],
) -> list[TrackedFace]:
    """The face pass of a several-face edit: every selected face (and, with `candidates`, every other face, a
    speaker's candidates after them) tracked in one pass over the frames (`track_many`)."""
    size = (info.width, info.height)
    detections = _detect_all(_decoded_small(src, None), size, lambda done: progress(done, info.frame_count))
    tracks = track_many(detections, selections, candidates=candidates, max_candidates=max_candidates)
    leave = max(1, round(LEAVE_S * float(info.fps)))
    found = []
    for boxes, label in zip(tracks.boxes, tracks.labels, strict=True):
        present = np.array([b is not None for b in boxes])
        for a, b in _gaps(present):
            if b - a + 1 <= leave:
                present[a : b + 1] = True
        source = _source_index(detections, boxes, source_frame)
        found.append(TrackedFace(crop_boxes(boxes, size, max_missing=1.0), present, boxes, source, label))
    return found


def _gaps(present: np.ndarray) -> list[tuple[int, int]]:
    """The inclusive ranges of frames where `present` is False."""
    gaps: list[tuple[int, int]] = []
    for i in np.flatnonzero(~present):
        if gaps and gaps[-1][1] == i - 1:
            gaps[-1] = (gaps[-1][0], int(i))
        else:
            gaps.append((int(i), int(i)))
    return gaps


def find_faces(
    src: Path,
    info: VideoInfo,
    *,
    crop_input: bool,
    selection: FaceSelection,
    max_missing: float,
    source_frame: int | None,
    progress: Callable[[int, int], None],
    limit: int | None = None,
) -> FacePlan:
    """The face pass over a video's frames; `limit`: only the first frames (a dub shorter than its
    video needs no more). The rest as `find_faces_in`."""
    total = info.frame_count if limit is None else min(limit, info.frame_count)
    return find_faces_in(
        _decoded_small(src, limit),
        (info.width, info.height),
        crop_input=crop_input,
        selection=selection,
        max_missing=max_missing,
        source_frame=source_frame,
        progress=lambda done: progress(done, total),
    )


def find_faces_in(
    images: Iterable[np.ndarray],
    size: tuple[int, int],
    *,
    crop_input: bool,
    selection: FaceSelection,
    max_missing: float,
    source_frame: int | None,
    progress: Callable[[int], None] = lambda _done: None,
) -> FacePlan:
    """The face pass over frames of one `size` (a video's, or a photo alone; the images may be decoded
    smaller, in its proportions: boxes are in `size`'s pixels). `crop_input`: the frames
    already are EDTalk's crop (the whole frame goes to the model and back). `source_frame` None: the
    first confident frontal frame of the tracked face. `progress(done)` after each frame."""
    detections = _detect_all(images, size, progress)
    n = len(detections)
    width, height = size
    tracked = track(detections, selection, frame_size=size)
    if crop_input:
        boxes = [CropBox(cx=width / 2, cy=height / 2, side=float(width))] * n
    else:
        boxes = crop_boxes(tracked, size, max_missing=max_missing)
    seen = tuple(box is not None for box in tracked)
    return FacePlan(boxes, _source_index(detections, tracked, source_frame), seen)


def _source_index(detections: list[list[Detection]], tracked: list[Box | None], chosen: int | None) -> int:
    """The identity frame: the one chosen, else the first confident frontal frame of the tracked face."""
    n = len(detections)
    if chosen is None:
        return select_source_frame(detections, tracked)
    if not 0 <= chosen < n:
        raise InputError(ErrorCode.BAD_SOURCE_FRAME, f"source frame {chosen} is outside the clip (frames 0-{n - 1})")
    return chosen
