"""Five facial landmarks (eye centres, nose tip, mouth corners) from MediaPipe's face mesh.

mediapipe 0.10.14's legacy `solutions.face_mesh` ships its face detector and 468-point mesh models
inside the wheel (like `faces.detect`), so nothing is downloaded. The mesh runs on the tracked
crop box of the input frame, resized to `LANDMARK_CROP` pixels: the face then fills about 58 % of
the image (the crop's framing), which the mesh's own detector finds reliably, and a 4K frame costs
no more than a small one. The five points are the ones the restorer's template is defined by.
"""

from __future__ import annotations

from types import TracebackType

import numpy as np

from cmet_core.faces.detect import native_stderr_silenced
from cmet_core.faces.geometry import CropBox
from cmet_core.faces.warp import crop_face

LANDMARK_CROP = 256

_EYE_A, _EYE_B = (33, 133), (362, 263)  # outer and inner corners of each eye
_NOSE_TIP = 1
_MOUTH = (61, 291)  # the mouth's corners


class Landmarker:
    """Five landmarks of the face in a crop box; a context manager because MediaPipe holds a native graph."""

    def __init__(self, min_score: float = 0.5) -> None:
        with native_stderr_silenced():
            from mediapipe.python.solutions import face_mesh

            self._mesh = face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=min_score
            )
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # the first run logs too

    def five(self, image: np.ndarray, box: CropBox) -> np.ndarray | None:
        """(5, 2) frame pixels: the eye centres, the nose tip and the mouth corners, each pair ordered left to
        right in the image (the template's order); None where the mesh finds no face."""
        crop = crop_face(image, box, LANDMARK_CROP)
        found = self._mesh.process(crop).multi_face_landmarks
        if not found:
            return None
        mesh = np.array([(p.x, p.y) for p in found[0].landmark], np.float64)
        eyes = sorted((mesh[list(_EYE_A)].mean(0), mesh[list(_EYE_B)].mean(0)), key=lambda p: float(p[0]))
        mouth = sorted((mesh[_MOUTH[0]], mesh[_MOUTH[1]]), key=lambda p: float(p[0]))
        points = np.stack([eyes[0], eyes[1], mesh[_NOSE_TIP], mouth[0], mouth[1]])
        return np.array([box.x0, box.y0]) + points * box.side

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> Landmarker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
