"""The restorer's stage of an edit: decide, find the landmarks (a pass of its own), restore each chunk.

It is the first per-frame stage of the frame loop (`cmet_core/edit/frame_stages.py`): `prepare`,
`output_size` and `apply` are that protocol.

It runs on the composited full-resolution frame, after the edited face is pasted back: the face is
cut out aligned to the restorer's template, restored, and warped back with a feathered mask, so the
edited face ends as sharp as the frame around it. The landmarks come from the input frames, in a
decoding pass before rendering that keeps five points per frame (memory stays flat in clip
length): the input's face has the sharp detail the mesh needs, the edit keeps the head's pose, and
all points must be known before they can be smoothed over time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence

import numpy as np

from cmet_core.enhance.align import alignments
from cmet_core.enhance.landmarks import Landmarker
from cmet_core.enhance.options import EnhanceChoice
from cmet_core.enhance.restore import Restorer, aligned_face, paste_aligned, restore_faces, tile_mask
from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces.geometry import CropBox
from cmet_core.meter import step
from cmet_core.stages import Progress, Stage

log = logging.getLogger(__name__)


def wanted(choice: EnhanceChoice, restorer: Restorer | None, face_side: float, face_size: int) -> bool:
    """Whether an edit restores its face: `on` (or `upscale` 2) needs the weights; `auto` wants them, a face
    that spans more output pixels than the generator renders and a restorer with a larger output than the
    generator's (else there is no detail to win). Strength 0 without upscaling would only resample the
    face twice: that is off too."""
    if choice.enhance == "off" or (choice.enhance_strength == 0 and choice.upscale == 1):
        return False
    if choice.enhance == "on" or choice.upscale != 1:
        if restorer is None:
            raise InputError(
                ErrorCode.RESTORER_UNAVAILABLE,
                "enhance on (or upscale 2) needs the face restorer, which this model set lacks; "
                "use enhance auto or off, or pull a set with it (`cmet models pull`)",
            )
        return True
    # and a restorer that renders more pixels than the generator (the published pair: 512 against 256)
    return restorer is not None and restorer.size > face_size and face_side * choice.upscale > face_size


class Enhancer:
    """One edit's restorer stage: `prepare` (the landmark pass), then `apply` to each chunk of composited frames."""

    name = Stage.ENHANCE

    def __init__(self, restorer: Restorer, choice: EnhanceChoice) -> None:
        self.restorer, self.choice = restorer, choice
        self.size = restorer.size
        self.mask = tile_mask(self.size)
        self.matrices: list[list[np.ndarray]] = []
        """Per face, per input frame: the frame -> aligned face map."""
        self.shown: list[np.ndarray] = []
        """Per face, per input frame: whether that face is restored there (an edited face; else the input's)."""
        self.missing = 0

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        return width * self.choice.upscale, height * self.choice.upscale

    def prepare(
        self,
        images: Iterable[np.ndarray],
        tracks: Sequence[Sequence[CropBox]],
        progress: Progress,
        shown: Sequence[np.ndarray] | None = None,
    ) -> None:
        """The landmark pass over the input frames (`images`, one per box: a video's decoded frames, a photo), one
        decode for every face's track; a face's landmarks are read only where it is `shown` (default: everywhere)."""
        n = len(tracks[0])
        self.shown = list(shown) if shown is not None else [np.ones(n, dtype=bool) for _ in tracks]
        points: list[list[np.ndarray | None]] = [[] for _ in tracks]
        with Landmarker() as landmarker:
            for i, image in enumerate(itertools.islice(images, n)):
                with step("landmarks"):
                    for k, boxes in enumerate(tracks):
                        points[k].append(landmarker.five(image, boxes[i]) if self.shown[k][i] else None)
                progress(Stage.ENHANCE, i + 1, n)
        self.matrices, self.missing = [], 0
        for found, boxes in zip(points, tracks, strict=True):
            found += [None] * (n - len(found))
            matrices, missing = alignments(found, boxes, self.size)
            self.matrices.append(matrices)
            self.missing += missing
        if self.missing:
            log.info(
                "no landmarks in %d of %d frames (of all faces): bridged or crop-box aligned",
                self.missing,
                n * len(tracks),
            )

    def apply(self, images: list[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
        """The chunk's frames with their shown faces restored (upscaled first when asked): one restorer call for
        every face of the chunk."""
        import cv2  # deferred: cv2

        where = [(j, k) for j, i in enumerate(indices) for k in range(len(self.matrices)) if self.shown[k][i]]
        with step("restorer warps"):
            aligned = [aligned_face(images[j], self.matrices[k][indices[j]], self.size) for j, k in where]
        restored = restore_faces(self.restorer, aligned, self.choice.enhance_strength) if aligned else []
        u = self.choice.upscale
        out = list(images)
        with step("restorer warps"):
            if u != 1:
                out = [
                    cv2.resize(im, (im.shape[1] * u, im.shape[0] * u), interpolation=cv2.INTER_LANCZOS4) for im in out
                ]
            for (j, k), face in zip(where, restored, strict=True):
                m = self.matrices[k][indices[j]]
                out[j] = paste_aligned(out[j], face, _upscaled(m, u) if u != 1 else m, self.mask)
        return out


def _upscaled(matrix: np.ndarray, u: int) -> np.ndarray:
    """The frame -> square map for the frame resized u times (pixel centres: q = u p + (u - 1) / 2)."""
    a = matrix[:, :2] / u
    return np.hstack([a, matrix[:, 2:] - a @ np.full((2, 1), (u - 1) / 2)])
