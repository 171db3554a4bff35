"""The active speaker of a several-face edit (`select: "speaker"`): every candidate face's mouth opening (the
quality report's signal: MediaPipe's mesh, the inner lips over the eyes' distance) read on the small frames the
face pass decodes, against the soundtrack's speech energy (the report's envelope); `faces/turns.py` chooses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cmet_core.faces.detect import MAX_DETECT_SIDE
from cmet_core.faces.find import TrackedFace
from cmet_core.faces.geometry import Box
from cmet_core.faces.turns import SpeakerTurn, turns
from cmet_core.media.video import VideoInfo, read_frames
from cmet_core.meter import metered
from cmet_core.quality.measures import opening, speech_envelope
from cmet_core.quality.readings import Mesh

READ_FPS = 12.5
"""Mouths read this often: enough for syllables, half the work of every frame at 25 fps."""


def mouth_openings(
    src: Path, info: VideoInfo, faces: list[TrackedFace], progress: Callable[[int, int], None]
) -> tuple[np.ndarray, np.ndarray]:
    """(times, openings (faces, times)): each face's mouth opening where it was detected, NaN elsewhere."""
    step = max(1, round(float(info.fps) / READ_FPS))
    wanted = set(range(0, info.frame_count, step))
    times, rows = [], []
    mesh = Mesh()
    try:
        for frame in metered("decode mouths", read_frames(src, wanted, max_side=MAX_DETECT_SIDE)):
            scale = frame.image.shape[1] / info.width
            row = []
            for face in faces:
                box = face.detected[frame.index] if frame.index < len(face.detected) else None
                points = mesh.points(frame.image, _scaled(box, scale)) if box is not None else None
                row.append(opening(points) if points is not None else np.nan)
            times.append(frame.time_s)
            rows.append(row)
            progress(frame.index + 1, info.frame_count)
    finally:
        mesh.close()
    return np.asarray(times), np.asarray(rows, dtype=np.float64).T.reshape(len(faces), len(times))


def _scaled(box: Box, scale: float) -> Box:
    return Box(box.x0 * scale, box.y0 * scale, box.x1 * scale, box.y1 * scale)


def speaker_turns(
    src: Path, info: VideoInfo, faces: list[TrackedFace], progress: Callable[[int, int], None]
) -> list[SpeakerTurn]:
    """Who of `faces` speaks when in `src` (which has audio: `select: speaker` is refused on a clip without)."""
    times, openings = mouth_openings(src, info, faces, progress)
    env_t, env = speech_envelope(src)
    energy = np.interp(times, env_t, env)
    return turns(times, openings, energy, [face.label for face in faces], info.duration_s)
