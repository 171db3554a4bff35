"""Where the restorer looks: a similarity transform per frame from five landmarks to its face template.

GFPGAN was trained on FFHQ faces aligned by five points (eye centres, nose tip, mouth corners) to a
fixed 512 template, and restores best on faces placed the same way. The per-frame points are
smoothed over time as the crop box is (`faces.framing`), so the aligned face does not jitter with
the landmark model's noise. They are smoothed relative to the crop box, which is already steady;
frames where the mesh found no face are bridged from their neighbours, and a clip where it never
finds one is aligned by the crop box alone (where the points sit in a crop on average).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmet_core.faces.framing import SMOOTH_FRAMES, smooth_series
from cmet_core.faces.geometry import CropBox

TEMPLATE_SIZE = 512
TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ]
)
"""The FFHQ five-point template of 512x512 faces that GFPGAN's aligner (facexlib) warps to, in image order:
eye left, eye right, nose tip, mouth corner left, mouth corner right."""

IN_CROP = np.array([[0.378, 0.40], [0.622, 0.40], [0.5, 0.535], [0.396, 0.675], [0.604, 0.675]])
"""The same points in crop-box sides from its top-left corner: medians over 60 frames of the uncropped fixture
clip, made symmetric (spread 0.004-0.015). The fallback alignment when landmarks fail."""


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift taking `src` points closest to `dst` (least squares).

    Least squares, not a robust estimator: smoothed points change a little from frame to frame, and so
    must the transform (a robust fit may switch which points it trusts, and jump).
    """
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    rows = np.concatenate([np.stack([x, -y, one, zero], 1), np.stack([y, x, zero, one], 1)])
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


def alignments(
    points: Sequence[np.ndarray | None], boxes: Sequence[CropBox], size: int, window: int = SMOOTH_FRAMES
) -> tuple[list[np.ndarray], int]:
    """Per frame, the 2x3 map from frame pixels to the `size` x `size` aligned face; and how many frames
    had no landmarks (bridged from their neighbours, or all aligned by the crop box)."""
    n = len(boxes)
    rel = np.full((n, 5, 2), np.nan)
    for i, (found, box) in enumerate(zip(points, boxes, strict=True)):
        if found is not None:
            rel[i] = (found - np.array([box.x0, box.y0])) / box.side
    known = np.flatnonzero(~np.isnan(rel[:, 0, 0]))
    if known.size == 0:
        rel[:] = IN_CROP
    else:
        frames = np.arange(n)
        for j in range(5):
            for k in range(2):
                rel[:, j, k] = smooth_series(np.interp(frames, known, rel[known, j, k]), window)
    template = TEMPLATE * (size / TEMPLATE_SIZE)
    return [
        similarity(np.array([box.x0, box.y0]) + r * box.side, template) for r, box in zip(rel, boxes, strict=True)
    ], n - known.size
