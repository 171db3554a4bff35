"""Face detection with MediaPipe's face detector, whose weights ship inside the `mediapipe` wheel.

mediapipe 0.10.14's legacy `solutions.face_detection` carries its TFLite models in the package,
so nothing is downloaded at run time (mediapipe 1.x's tasks API downloads them; see
ENVIRONMENT.md). The short-range model is used first: on the 25 fixture face crops it gives
scores of 0.91-0.96 and tight, consistent boxes; the full-range model is the fallback for small,
distant faces it misses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

import numpy as np


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """MediaPipe's C++ side prints warnings straight to fd 2 while building and first running its
    graph (absl logging before InitializeLog, which no setting reaches); keep them out of a user's terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)

MAX_DETECT_SIDE = 640
"""Frames are shrunk to this before detection: the models work at 128/192 px, so a 4K frame only costs conversion time."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels of the upright frame."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def w(self) -> float:
        return self.x1 - self.x0

    @property
    def h(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.w, 0.0) * max(self.h, 0.0)

    def iou(self, other: Box) -> float:
        inter = Box(max(self.x0, other.x0), max(self.y0, other.y0), min(self.x1, other.x1), min(self.y1, other.y1))
        if inter.w <= 0 or inter.h <= 0:
            return 0.0
        return inter.area / (self.area + other.area - inter.area)


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    frontal: float
    """1 when the nose sits midway between the ears (a frontal face), towards 0 in profile."""


def _frontal(keypoints: list[tuple[float, float]]) -> float:
    """From MediaPipe's six keypoints (eyes, nose tip, mouth, ear tragions): ear-to-nose symmetry."""
    nose_x, right_ear_x, left_ear_x = keypoints[2][0], keypoints[4][0], keypoints[5][0]
    a, b = abs(nose_x - right_ear_x), abs(left_ear_x - nose_x)
    return float(min(a, b) / max(a, b)) if max(a, b) > 0 else 0.0


class FaceDetector:
    """Finds faces in RGB frames of any size; a context manager because MediaPipe holds a graph."""

    def __init__(self, min_score: float = 0.5) -> None:
        with _native_stderr_silenced():
            from mediapipe.python.solutions import face_detection

            self._models = [face_detection.FaceDetection(model_selection=m, min_detection_confidence=min_score) for m in (0, 1)]
            blank = np.zeros((64, 64, 3), np.uint8)
            for model in self._models:
                model.process(blank)  # the first run logs too

    def detect(self, image: np.ndarray) -> list[Detection]:
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, MAX_DETECT_SIDE / max(h, w))
        small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else image
        small = np.ascontiguousarray(small)
        for model in self._models:
            found = model.process(small).detections
            if found:
                return [self._detection(d, w, h) for d in found]
        return []

    @staticmethod
    def _detection(d, w: int, h: int) -> Detection:  # type: ignore[no-untyped-def]
        rel = d.location_data.relative_bounding_box
        box = Box(rel.xmin * w, rel.ymin * h, (rel.xmin + rel.width) * w, (rel.ymin + rel.height) * h)
        keypoints = [(k.x * w, k.y * h) for k in d.location_data.relative_keypoints]
        return Detection(box=box, score=float(d.score[0]), frontal=_frontal(keypoints))

    def close(self) -> None:
        for model in self._models:
            model.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
