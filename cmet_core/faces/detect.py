"""Face detection with MediaPipe's BlazeFace models, whose weights ship inside the `mediapipe` wheel.

mediapipe 0.10.14's legacy `solutions.face_detection` carries its TFLite models in the package,
so nothing is downloaded at run time (mediapipe's newer tasks API downloads them). Measured on 30
fixture face crops (15 images, 15 frames of the 5 cropped clips): the short-range model finds every
face with scores 0.86-0.96 and boxes 0.46-0.63 of the crop wide; the full-range model also finds
them all, but with scores down to 0.65, looser boxes (0.49-0.80) and at half the speed. So "auto" (the
default) runs the short-range model and falls back to the full-range one, which also sees small,
distant faces, only where the first finds nothing; its boxes are mapped onto the short-range
model's framing, so a clip's crop does not depend on which model found the face.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import numpy as np

from cmet_core.faces.geometry import Box

Model = Literal["auto", "short", "full"]
_SHORT_RANGE, _FULL_RANGE = 0, 1  # MediaPipe's `model_selection` values
_GRAPHS = {"short": (_SHORT_RANGE,), "full": (_FULL_RANGE,), "auto": (_SHORT_RANGE, _FULL_RANGE)}

# protobuf's deprecation warning fires inside MediaPipe's result conversion: the library's business, not the user's
warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated", category=UserWarning)

MAX_DETECT_SIDE = 640
"""Frames are shrunk to this before detection: the models look at 128 or 192 px, so more only costs conversion."""

FULL_RANGE_WIDTH = 1.12
FULL_RANGE_RISE = 0.068
"""On the fixtures the full-range box is 1.12x the short-range box's width (median; 1.06-1.18) and its
centre sits 0.068 of the short-range width higher."""


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    frontal: float
    """1 when the eyes sit symmetrically about the nose tip (a frontal face), towards 0 as the head turns."""


def _frontal(keypoints: list[tuple[float, float]]) -> float:
    """From MediaPipe's six keypoints (right eye, left eye, nose tip, mouth, ears): eye-to-nose symmetry.

    The eyes are taken left to right in the image, so a mirrored frame scores the same.
    """
    eye_a, eye_b = sorted((keypoints[0][0], keypoints[1][0]))
    nose = keypoints[2][0]
    near, far = sorted((nose - eye_a, eye_b - nose))
    return float(max(near, 0.0) / far) if far > 0 else 0.0


def _as_short_range(box: Box) -> Box:
    w, h = box.w / FULL_RANGE_WIDTH, box.h / FULL_RANGE_WIDTH
    cx, cy = box.cx, box.cy + FULL_RANGE_RISE * w
    return Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ side logs to fd 2 while building and first running a graph (absl logging before
    InitializeLog, which no environment setting reaches); this keeps it out of a user's terminal.

    It swaps the process's fd 2 for a moment, so another thread's stderr output in that window is lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class FaceDetector:
    """Finds faces in RGB frames of any size; a context manager because MediaPipe holds native graphs."""

    def __init__(self, min_score: float = 0.5, model: Model = "auto") -> None:
        selections = _GRAPHS.get(model)
        if selections is None:
            raise ValueError(f"model must be 'auto', 'short' or 'full', got {model!r}")
        with native_stderr_silenced():
            from mediapipe.python.solutions import face_detection  # deferred: mediapipe

            self._models = [
                (s, face_detection.FaceDetection(model_selection=s, min_detection_confidence=min_score))
                for s in selections
            ]
            blank = np.zeros((64, 64, 3), np.uint8)
            for _, graph in self._models:
                graph.process(blank)  # the first run logs too

    def detect(self, image: np.ndarray, frame_size: tuple[int, int] | None = None) -> list[Detection]:
        """Every face in an (H, W, 3) uint8 RGB image, boxes in its own pixels; or in `frame_size` (w, h)
        pixels where the image is a frame scaled down to that size's proportions (decoded small)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        w, h = frame_size if frame_size is not None else (image.shape[1], image.shape[0])
        small = np.ascontiguousarray(_shrink(image, MAX_DETECT_SIDE))
        for selection, graph in self._models:
            found = graph.process(small).detections
            if found:
                return [_detection(d, w, h, full_range=selection == _FULL_RANGE) for d in found]
        return []

    def close(self) -> None:
        for _, graph in self._models:
            graph.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    import cv2  # deferred: cv2

    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _detection(d: Any, w: int, h: int, full_range: bool) -> Detection:
    """MediaPipe's relative coordinates in the original frame's pixels (they hold for the shrunk copy too)."""
    rel = d.location_data.relative_bounding_box
    box = Box(rel.xmin * w, rel.ymin * h, (rel.xmin + rel.width) * w, (rel.ymin + rel.height) * h)
    keypoints = [(k.x * w, k.y * h) for k in d.location_data.relative_keypoints]
    return Detection(
        box=_as_short_range(box) if full_range else box, score=float(d.score[0]), frontal=_frontal(keypoints)
    )
