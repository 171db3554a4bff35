"""An expression reference: the mean expression code of a photo or short clip of a face making the wanted
expression, read by the backbone's own expression encoder (EDTalk's expression weights, PD-FGC's emotion code).

The face is found as an edit finds it (its most prominent face, framed as the backbone frames it), but
only the frames where the detector saw the face count: bridged frames would average a guessed crop
into the code. A reference with no such frame is refused with `no_face` (decision 0040).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from cmet_core import faces
from cmet_core.backbones.base import Backbone
from cmet_core.edit.passes import chunks, framed, motion_of
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.mel import FPS as LIP_FPS
from cmet_core.media.photo import read_photo
from cmet_core.media.video import read_frames
from cmet_core.options import Limits, probe_reference

MAX_REFERENCE_FRAMES = 64
"""Frames of a reference encoded at most, evenly spaced over those showing the face: one expression is held, so
64 frames average it as well as 750 (30 s at 25 fps) would, at a twelfth of the encoder's work."""


def reference_expression(backbone: Backbone, path: Path, limits: Limits) -> np.ndarray:
    """(exp width,) float32: the mean expression code over the reference's frames that show a face."""
    try:
        return _mean_code(backbone, path, limits)
    except InputError as exc:
        raise InputError(exc.code, f"expression reference {path.name}: {exc}".replace(str(path), path.name)) from None


def _mean_code(backbone: Backbone, path: Path, limits: Limits) -> np.ndarray:
    size = backbone.framing.size
    info = probe_reference(path, limits)
    if info is None:
        image = read_photo(path, limits.max_pixels_per_second / LIP_FPS)
        h, w = image.shape[:2]
        plan = faces.find_faces_in(
            [image],
            (w, h),
            crop_input=faces.is_face_crop(w, h),
            selection=faces.FaceSelection(),
            max_missing=1.0,
            source_frame=0,
        )
        images: Iterator[np.ndarray] = iter([image])
    else:
        plan = faces.find_faces(
            path,
            info,
            crop_input=faces.is_face_crop(info.width, info.height),
            selection=faces.FaceSelection(),
            max_missing=1.0,
            source_frame=None,
            progress=lambda _done, _total: None,
        )
        images = (f.image for f in read_frames(path))
    seen = [i for i, found in enumerate(plan.seen) if found]
    if not seen:
        raise InputError(ErrorCode.NO_FACE, "no face found in any frame")
    taken = {seen[round(k)] for k in np.linspace(0, len(seen) - 1, min(len(seen), MAX_REFERENCE_FRAMES))}
    boxes = framed(plan.boxes, backbone.framing)
    shown = (faces.crop_face(image, boxes[i], size) for i, image in enumerate(images) if i in taken)
    codes = [motion_of(backbone, crops).exp.float().cpu() for crops in chunks(shown, limits.chunk_frames)]
    mean: np.ndarray = torch.cat(codes).mean(dim=0).numpy()
    return mean
