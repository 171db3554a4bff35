"""Following one face through a clip, and choosing the frame that gives EDTalk the identity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces.detect import Detection
from cmet_core.faces.geometry import Box

MIN_IOU = 0.1
"""Below this overlap with the face followed so far, a detection is someone (or something) else."""

CONFIRM_FRAMES = 2
"""A face starts the track only if it is found again in this many following frames: the detector sees the odd
20 px "face" in noise or texture (scores up to 0.63 on random pixels), never twice in the same place."""

SOURCE_MIN_SCORE = 0.75
SOURCE_MIN_FRONTAL = 0.8
"""A source frame must show the face clearly and nearly frontal: EDTalk takes the identity from that one crop."""


@dataclass(frozen=True)
class FaceSelection:
    """Which face to edit: the i-th from the left, the one overlapping `box`, or (neither) the largest, most central."""

    index: int | None = None
    box: Box | None = None


def _prominence(d: Detection, frame_size: tuple[int, int] | None) -> float:
    """Area, discounted by distance from the frame centre, so a big face at the edge can lose to a centred one."""
    if frame_size is None:
        return d.box.area
    w, h = frame_size
    off: float = (((d.box.cx - w / 2) / w) ** 2 + ((d.box.cy - h / 2) / h) ** 2) ** 0.5
    return d.box.area * (1.0 - min(1.0, off))


def _bad_selection(message: str) -> InputError:
    return InputError(ErrorCode.BAD_FACE_SELECTION, message)


def _first_face(faces: list[Detection], selection: FaceSelection, frame_size: tuple[int, int] | None) -> Detection:
    if selection.index is not None:
        ordered = sorted(faces, key=lambda d: d.box.cx)
        if not 0 <= selection.index < len(ordered):
            raise _bad_selection(
                f"face index {selection.index} asked for, but the first frame with faces shows {len(ordered)}"
            )
        return ordered[selection.index]
    if selection.box is not None:
        wanted = selection.box
        return max(faces, key=lambda d: d.box.iou(wanted))
    return max(faces, key=lambda d: _prominence(d, frame_size))


def _confirmed(detections: Sequence[list[Detection]], i: int, box: Box) -> bool:
    following = detections[i + 1 : i + 1 + CONFIRM_FRAMES]
    return all(any(d.box.iou(box) >= MIN_IOU for d in faces) for faces in following)


def track(
    detections: Sequence[list[Detection]],
    selection: FaceSelection = FaceSelection(),
    *,
    frame_size: tuple[int, int] | None = None,
) -> list[Box | None]:
    """The chosen face's box in every frame, None where it was not found.

    The face is chosen in the first frame showing faces that are found again in the next frames (with
    a box selection: such a face overlapping the box), then followed forwards and backwards, each
    frame taking the detection that best overlaps the last box found. `frame_size` (w, h) lets the
    default choice prefer central faces; without it the largest face wins.
    """
    wanted = selection.box
    candidates = (
        (i, [d for d in faces if (wanted is None or d.box.iou(wanted) > 0) and _confirmed(detections, i, d.box)])
        for i, faces in enumerate(detections)
    )
    start, faces = next(((i, faces) for i, faces in candidates if faces), (None, []))
    boxes: list[Box | None] = [None] * len(detections)
    if start is None:
        if wanted is not None and any(detections):
            raise _bad_selection("no detected face overlaps the given face box")
        return boxes
    first = _first_face(faces, selection, frame_size)
    boxes[start] = first.box
    for order in (range(start + 1, len(detections)), range(start - 1, -1, -1)):
        last = first.box
        for i in order:
            best = max(detections[i], key=lambda d: d.box.iou(last), default=None)
            if best is not None and best.box.iou(last) >= MIN_IOU:
                boxes[i] = last = best.box
    return boxes


def select_source_frame(
    detections: Sequence[list[Detection]],
    tracked: Sequence[Box | None],
    min_score: float = SOURCE_MIN_SCORE,
    min_frontal: float = SOURCE_MIN_FRONTAL,
) -> int:
    """The first frame whose tracked face is confident and frontal, else the most frontal one (0 if none is tracked)."""
    best, best_frontal = 0, -1.0
    for i, box in enumerate(tracked):
        match = next((d for d in detections[i] if d.box == box), None) if box is not None else None
        if match is None:
            continue
        if match.score >= min_score and match.frontal >= min_frontal:
            return i
        if match.frontal > best_frontal:
            best, best_frontal = i, match.frontal
    return best
