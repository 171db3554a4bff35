"""What the quality measures read from one video: on sampled frames, the face, its mesh, its descriptor
and its expression.

Frames are sampled as anchors, `per_second` of them a second of video (at least `MIN_ANCHORS`, or
every frame of a shorter clip), each with the two frames after it (a burst) so that landmark
acceleration is measured frame to frame, not between samples a fifth of a second apart. On each anchor
the face is detected (MediaPipe, as the edit does; the face that overlaps the previous anchor's, else
the largest), its expression classified and, on every `identity_every`-th anchor, its dlib
descriptor taken (the costliest reading: about 0.1 s per face on one CPU core). MediaPipe's face mesh
runs on every frame of the burst, on the anchor's box.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from cmet_core.faces.detect import FaceDetector, native_stderr_silenced
from cmet_core.faces.framing import FACE_DROP_IN_CROP, FACE_WIDTH_IN_CROP
from cmet_core.faces.geometry import Box, CropBox
from cmet_core.faces.warp import crop_face
from cmet_core.media.video import read_frames
from cmet_core.quality.models import EMOTION_INPUT, QualityModels

BURST = 3
"""Frames read from each anchor on (acceleration needs three in a row)."""
MIN_ANCHORS = 8
MIN_IDENTITY, MAX_IDENTITY = 1, 6
"""Descriptors taken per video at least (where there are as many anchors) and at most: the descriptor is the
costliest reading, and six frames spread over the clip tell a kept identity from a lost one."""
BRIDGE_S = 1.0
"""An anchor without a detection takes the last detected box if it is at most this old (bridged)."""
MESH_CROP = 192
"""The mesh runs on the face's crop at this side (as `enhance.landmarks`; 192 px is 2.5x faster than 256
on the CPU and finds every fixture face)."""
EMOTION_MARGIN = 1.2
"""The classifier's crop: the detection box's longer side widened by 20 % (fer pads its detector's box)."""


class FaceStatus(StrEnum):
    TRACKED = "tracked"
    BRIDGED = "bridged"
    MISSING = "missing"


@dataclass(frozen=True)
class Sampling:
    """Which frames are read: anchors, and which of them also give a descriptor."""

    anchors: tuple[int, ...]
    identity_every: int
    per_second: float
    burst_every: int = 3
    """Every this many anchors read a burst (the others only the anchor frame): landmark acceleration needs
    no more, and the mesh is the second costliest reading."""

    def frames(self) -> set[int]:
        """Every frame read."""
        return {a + k for n, a in enumerate(self.anchors) for k in range(BURST if n % self.burst_every == 0 else 1)}

    @classmethod
    def of(cls, frame_count: int, fps: float, per_second: float, identity_per_second: float) -> Sampling:
        usable = max(frame_count - (BURST - 1), 1)
        wanted = max(MIN_ANCHORS, round(frame_count / max(fps, 1e-6) * per_second))
        if wanted >= usable:
            anchors = tuple(range(usable))
        else:
            anchors = tuple(int(i) for i in np.unique(np.linspace(0, usable - 1, wanted).round().astype(int)))
        step = usable / max(len(anchors), 1)  # frames between anchors
        identity_every = max(1, round(fps / max(identity_per_second, 1e-6) / max(step, 1.0)))
        identity_every = min(identity_every, max(1, len(anchors) // MIN_IDENTITY))
        identity_every = max(identity_every, -(-len(anchors) // MAX_IDENTITY))
        return cls(anchors, identity_every, per_second)


@dataclass
class Reading:
    """One anchor of one video."""

    index: int
    time_s: float
    status: FaceStatus
    box: Box | None = None
    meshes: list[np.ndarray | None] = field(default_factory=list)
    """The burst's face mesh (468, 2) in frame pixels, None where the mesh found no face."""
    descriptor: np.ndarray | None = None
    emotion: np.ndarray | None = None


class Mesh:
    """MediaPipe's face mesh on a face's crop (still-image mode: no tracking carries one frame's points to the
    next, so jitter is the video's, not the tracker's)."""

    def __init__(self) -> None:
        with native_stderr_silenced():
            from mediapipe.python.solutions import face_mesh  # deferred: mediapipe

            self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))  # the first run logs too

    def points(self, image: np.ndarray, box: Box) -> np.ndarray | None:
        side = box.w / FACE_WIDTH_IN_CROP
        crop = CropBox(box.cx, box.cy - FACE_DROP_IN_CROP * side, side)
        found = self._mesh.process(crop_face(image, crop, MESH_CROP)).multi_face_landmarks
        if not found:
            return None
        rel = np.array([(p.x, p.y) for p in found[0].landmark], np.float64)
        return np.array([crop.x0, crop.y0]) + rel * crop.side

    def close(self) -> None:
        self._mesh.close()


_THREAD = threading.local()


def readers() -> tuple[FaceDetector, Mesh]:
    """This thread's detector and mesh, built on its first report and kept: building MediaPipe's graphs costs
    more than reading a short clip, and a graph must not be shared between threads (a worker's jobs)."""
    if not hasattr(_THREAD, "readers"):
        _THREAD.readers = (FaceDetector(), Mesh())
    found: tuple[FaceDetector, Mesh] = _THREAD.readers
    return found


def _choose(found: list[Box], previous: Box | None) -> Box | None:
    if not found:
        return None
    if previous is not None:
        best = max(found, key=previous.iou)
        if previous.iou(best) > 0:
            return best
    return max(found, key=lambda b: b.area)


def emotion_crop(image: np.ndarray, box: Box) -> np.ndarray:
    import cv2  # deferred: cv2

    rgb = crop_face(image, CropBox(box.cx, box.cy, max(box.w, box.h) * EMOTION_MARGIN), EMOTION_INPUT)
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))


def read_video(
    path: Path, sampling: Sampling, models: QualityModels, detector: FaceDetector, mesh: Mesh
) -> list[Reading]:
    """The readings of every anchor of `path`, in order."""
    anchors = {index: n for n, index in enumerate(sampling.anchors)}
    readings: list[Reading] = []
    reach: dict[int, int] = {}  # anchor index -> frames its burst reads (bursts of close anchors overlap)
    last_seen: tuple[float, Box] | None = None
    wanted = sampling.frames()
    for frame in read_frames(path, wanted):
        n = anchors.get(frame.index)
        if n is not None:
            current = Reading(frame.index, frame.time_s, FaceStatus.MISSING)
            readings.append(current)
            reach[frame.index] = BURST if n % sampling.burst_every == 0 else 1
            box = _choose([d.box for d in detector.detect(frame.image)], last_seen[1] if last_seen else None)
            if box is not None:
                current.status, last_seen = FaceStatus.TRACKED, (frame.time_s, box)
            elif last_seen is not None and frame.time_s - last_seen[0] <= BRIDGE_S:
                current.status, box = FaceStatus.BRIDGED, last_seen[1]
            current.box = box
            if box is not None:
                current.emotion = models.emotion(emotion_crop(frame.image, box))
                if n % sampling.identity_every == 0:
                    current.descriptor = models.descriptor(frame.image, (box.x0, box.y0, box.x1, box.y1))
        for r in readings[-BURST:]:
            if 0 <= frame.index - r.index < reach[r.index]:
                r.meshes.append(mesh.points(frame.image, r.box) if r.box is not None else None)
        if frame.index >= max(wanted):
            break
    return readings
