"""From a tracked face to the square crops EDTalk expects, steady over the whole clip.

EDTalk's own video crop (`crop_video.py`, also used for its MEAD/HDTF training data) takes the union
of a clip's S3FD face boxes (the face tube), widens it by 10% on each side and scales it to 256x256.
We reach that framing without the tube, calibrated on the fixture face crops (EDTalk's and C-MET's):
there MediaPipe's short-range box is 0.577 of the crop side wide (median of 30 crops and sampled
frames; 0.46-0.63: static MEAD/HDTF heads ~0.61, EDTalk's moving-head demo clips 0.49-0.55, where the
tube grows with the motion) and its centre sits 0.068 of the side below the crop centre. So the side
is the clip's median face width / 0.577, i.e. the face box enlarged 1.73x, one side for the whole
clip (a zoom that breathes with the detector would read as the face growing and shrinking), and the
centre follows the face through a centred moving average, which removes detector jitter without lag.
A median instead of a tube also keeps one stray detection from widening every frame's crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmet_core.errors import ErrorCode
from cmet_core.faces.geometry import Box, CropBox
from cmet_core.media.video import MediaError

FACE_WIDTH_IN_CROP = 0.577
FACE_DROP_IN_CROP = 0.068
SMOOTH_FRAMES = 9
"""Frames in the centred moving average: 0.36 s at 25 fps, long enough to average out detector jitter,
short enough to follow a turning head."""

_RANGES_NAMED = 20


class NoFaceError(MediaError):
    """Too many frames without the face; `frames` holds the inclusive ranges of frame indices that lack it."""

    def __init__(self, frames: list[tuple[int, int]], total: int, max_missing: float) -> None:
        self.frames = frames
        if total == 0:
            super().__init__(ErrorCode.NO_FACE, "no face found: the clip has no frames")
            return
        missing = sum(b - a + 1 for a, b in frames)
        named = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in frames[:_RANGES_NAMED])
        more = ", ..." if len(frames) > _RANGES_NAMED else ""
        super().__init__(
            ErrorCode.NO_FACE,
            f"no face found in frames {named}{more} ({missing} of {total} frames; at most {max_missing:.0%} may miss)",
        )


def _missing_ranges(track: Sequence[Box | None]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for i, box in enumerate(track):
        if box is not None:
            continue
        if ranges and ranges[-1][1] == i - 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    return ranges


def smooth_series(values: np.ndarray, window: int = SMOOTH_FRAMES) -> np.ndarray:
    """Centred moving average over an odd window; the ends are padded with their own value, so they do not drift."""
    half = window // 2
    if half == 0 or len(values) < 2:
        return values
    padded = np.pad(values, half, mode="edge")
    return np.convolve(padded, np.ones(2 * half + 1) / (2 * half + 1), mode="valid")


def crop_boxes(
    track: Sequence[Box | None], frame_size: tuple[int, int], *, max_missing: float = 0.1, window: int = SMOOTH_FRAMES
) -> list[CropBox]:
    """One crop per frame: gaps bridged from the neighbouring frames, centre smoothed, side fixed.

    Gaps are interpolated between the frames around them and held at the clip's ends. Raises
    NoFaceError when no frame, or more than `max_missing` of them, show the face. The centre is kept
    inside the frame (`frame_size` is (w, h)), so an interpolated box can never drift off it.
    """
    n = len(track)
    gaps = _missing_ranges(track)
    missing = sum(b - a + 1 for a, b in gaps)
    if missing == n or missing > max_missing * n:
        raise NoFaceError(gaps, n, max_missing)
    known = [(i, b) for i, b in enumerate(track) if b is not None]
    at = np.array([i for i, _ in known])
    frames = np.arange(n)
    cx = np.interp(frames, at, [b.cx for _, b in known])
    cy = np.interp(frames, at, [b.cy for _, b in known])
    side = float(np.median([b.w for _, b in known])) / FACE_WIDTH_IN_CROP
    w, h = frame_size
    cx = np.clip(smooth_series(cx, window), 0, w)
    cy = np.clip(smooth_series(cy, window) - FACE_DROP_IN_CROP * side, 0, h)
    return [CropBox(float(x), float(y), side) for x, y in zip(cx, cy, strict=True)]
