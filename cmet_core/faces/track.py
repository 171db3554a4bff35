"""Following one face through a clip, and choosing the frame that gives the identity."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cmet_core.errors import InputError
from cmet_core.faces.detect import Box, Detection

MIN_IOU = 0.1
"""Below this overlap with the face followed so far, a detection is someone (or something) else."""


@dataclass(frozen=True)
class FaceSelection:
    """Which face to edit: the i-th from the left, the one overlapping `box`, or (neither) the largest, most central."""

    index: int | None = None
    box: Box | None = None


def _prominence(d: Detection, width: float, height: float) -> float:
    """Area, discounted by distance from the frame centre (a big face at the edge loses to a centred one)."""
    dx, dy = (d.box.cx - width / 2) / width, (d.box.cy - height / 2) / height
    return d.box.area * (1.0 - min(1.0, (dx * dx + dy * dy) ** 0.5))


def _first_face(faces: list[Detection], selection: FaceSelection, frame_size: tuple[int, int]) -> Detection:
    if selection.index is not None:
        ordered = sorted(faces, key=lambda d: d.box.cx)
        if selection.index >= len(ordered):
            raise InputError(
                "bad_face_selection", f"face index {selection.index} asked for, but the first frame with faces shows {len(ordered)}"
            )
        return ordered[selection.index]
    if selection.box is not None:
        wanted = selection.box
        best = max(faces, key=lambda d: d.box.iou(wanted))
        if best.box.iou(wanted) <= 0:
            raise InputError("bad_face_selection", "no detected face overlaps the given face box")
        return best
    return max(faces, key=lambda d: _prominence(d, *frame_size))


def track(
    detections: Sequence[list[Detection]], frame_size: tuple[int, int], selection: FaceSelection = FaceSelection()
) -> list[Box | None]:
    """The chosen face's box in every frame (None where it was not found).

    The face is chosen in the first frame showing faces (a box selection: the first frame where
    one overlaps it), then followed forwards and backwards by best overlap with its last box.
    """
    wanted = selection.box
    start = next((i for i, faces in enumerate(detections) if any(wanted is None or d.box.iou(wanted) > 0 for d in faces)), None)
    boxes: list[Box | None] = [None] * len(detections)
    if start is None:
        if selection.box is not None and any(detections):
            raise InputError("bad_face_selection", "no detected face overlaps the given face box")
        return boxes
    first = _first_face(detections[start], selection, frame_size)
    boxes[start] = first.box
    for order in (range(start + 1, len(detections)), range(start - 1, -1, -1)):
        last = first.box
        for i in order:
            best = max(detections[i], key=lambda d: d.box.iou(last), default=None)
            if best is not None and best.box.iou(last) >= MIN_IOU:
                boxes[i] = last = best.box
    return boxes


def select_source_frame(detections: Sequence[list[Detection]], tracked: Sequence[Box | None], min_score: float = 0.85, min_frontal: float = 0.7) -> int:
    """The first frame whose tracked face is confident and frontal, else the most frontal one."""
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
