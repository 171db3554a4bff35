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


REACQUIRE_WIDTHS = 1.0
"""A face lost for a while is found again by a free detection whose centre lies within this many of its last
widths from where it was last seen (its box may no longer overlap)."""


@dataclass(frozen=True)
class ManyTracks:
    """Several faces followed through a clip: per face, its box in every frame (None where it was not found),
    and its place from the left in the frame they were chosen in (how results name it)."""

    boxes: list[list[Box | None]]
    labels: list[int]


def faces_at_start(detections: Sequence[list[Detection]]) -> tuple[int, list[Detection]] | None:
    """The first frame showing faces that are found again in the next frames, and those faces from the left:
    where `faces[].select` counts its indices (the probe shows them)."""
    for i, faces in enumerate(detections):
        confirmed = [d for d in faces if _confirmed(detections, i, d.box)]
        if confirmed:
            return i, sorted(confirmed, key=lambda d: d.box.cx)
    return None


def track_many(
    detections: Sequence[list[Detection]],
    selections: Sequence[FaceSelection],
    *,
    candidates: bool = False,
    max_candidates: int = 16,
) -> ManyTracks:
    """Each selected face, then (`candidates`) every other face of the first frame showing faces, followed
    through the clip with identities kept apart: in each frame, each detection goes to at most one face, the
    best overlaps first; a face lost for a while takes back a free detection near where it was last seen.

    Raises `bad_face_selection` for a selection that matches no face and `face_selected_twice` where two
    select the same one."""
    first = faces_at_start(detections)
    if first is None:
        raise _bad_selection("no face is found in the clip")
    start, ordered = first
    chosen: list[int] = []
    for selection in selections:
        if selection.index is not None:
            if selection.index >= len(ordered):
                raise _bad_selection(
                    f"face index {selection.index} asked for, but the first frame with faces shows {len(ordered)}"
                )
            k = selection.index
        else:
            assert selection.box is not None
            wanted = selection.box
            k = max(range(len(ordered)), key=lambda j: ordered[j].box.iou(wanted))
            if ordered[k].box.iou(wanted) <= 0:
                raise _bad_selection("no face of the first frame with faces overlaps the given face box")
        if k in chosen:
            raise InputError(ErrorCode.FACE_SELECTED_TWICE, f"two entries of faces select the face {k} from the left")
        chosen.append(k)
    if candidates:
        others = [k for k in range(len(ordered)) if k not in chosen][:max_candidates]
        if not others:
            raise _bad_selection("select: speaker finds no face that another entry does not select")
        chosen += others
    firsts = [ordered[k].box for k in chosen]
    boxes: list[list[Box | None]] = [[None] * len(detections) for _ in chosen]
    for face, box in enumerate(firsts):
        boxes[face][start] = box
    for order in (range(start + 1, len(detections)), range(start - 1, -1, -1)):
        last, seen = list(firsts), [start] * len(firsts)
        for i in order:
            for face, d in _assigned(detections[i], last, seen, i).items():
                boxes[face][i] = last[face] = d.box
                seen[face] = i
    return ManyTracks(boxes, chosen)


def _assigned(found: list[Detection], last: list[Box], seen: list[int], i: int) -> dict[int, Detection]:
    """Each face's detection in this frame: the best overlaps first, then, for a face not found in the frame
    before, the nearest free detection close to where it was last seen."""
    pairs = sorted(((last[f].iou(d.box), f, j) for f in range(len(last)) for j, d in enumerate(found)), reverse=True)
    taken: dict[int, Detection] = {}
    used: set[int] = set()
    for overlap, f, j in pairs:
        if overlap >= MIN_IOU and f not in taken and j not in used:
            taken[f] = found[j]
            used.add(j)
    lost = [f for f in range(len(last)) if f not in taken and abs(i - seen[f]) > 1]
    near = sorted(
        (((last[f].cx - d.box.cx) ** 2 + (last[f].cy - d.box.cy) ** 2) ** 0.5 / last[f].w, f, j)
        for f in lost
        for j, d in enumerate(found)
        if j not in used
    )
    for distance, f, j in near:
        if distance <= REACQUIRE_WIDTHS and f not in taken and j not in used:
            taken[f] = found[j]
            used.add(j)
    return taken
