"""The face pass of an edit or a preview: detect in every frame, follow one face, choose the identity frame.

One implementation for the edit pipeline and the contact sheet, so a preview crops the face, and takes
its identity from the frame, exactly as the full edit will.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces.detect import Detection, FaceDetector
from cmet_core.faces.framing import crop_boxes
from cmet_core.faces.geometry import Box, CropBox
from cmet_core.faces.track import FaceSelection, select_source_frame, track
from cmet_core.media.video import VideoInfo, read_frames


@dataclass(frozen=True)
class FacePlan:
    """Every frame's crop box and the frame whose face gives the identity."""

    boxes: list[CropBox]
    source_index: int


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
    """`crop_input`: the frames already are EDTalk's crop (the whole frame goes to the model and back).
    `source_frame` None: the first confident frontal frame of the tracked face. `progress(done, total)`.
    `limit`: only the first frames (a dub shorter than its video needs no more)."""
    detections: list[list[Detection]] = []
    total = info.frame_count if limit is None else min(limit, info.frame_count)
    with FaceDetector() as detector:
        for frame in itertools.islice(read_frames(src), limit):
            detections.append(detector.detect(frame.image))
            progress(len(detections), total)
    n = len(detections)
    tracked = track(detections, selection, frame_size=(info.width, info.height))
    if crop_input:
        boxes = [CropBox(cx=info.width / 2, cy=info.height / 2, side=float(info.width))] * n
    else:
        boxes = crop_boxes(tracked, (info.width, info.height), max_missing=max_missing)
    return FacePlan(boxes, _source_index(detections, tracked, source_frame))


def _source_index(detections: list[list[Detection]], tracked: list[Box | None], chosen: int | None) -> int:
    n = len(detections)
    if chosen is None:
        return select_source_frame(detections, tracked)
    if not 0 <= chosen < n:
        raise InputError(ErrorCode.BAD_SOURCE_FRAME, f"source frame {chosen} is outside the clip (frames 0-{n - 1})")
    return chosen
