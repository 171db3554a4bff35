"""Cutting the face crop out of a frame and putting the rendered face back.

OpenCV (installed with mediapipe) does the resampling: `warpAffine` for sub-pixel placement,
`INTER_AREA` when shrinking so large frames do not alias. Parts of a crop past the frame border
are edge-replicated rather than black: EDTalk never saw black bars in training, and the pasted
face only uses what lies inside the frame anyway.
"""

from __future__ import annotations

import math

import numpy as np

from cmet_core.faces.boxes import CropBox

FACE_SIZE = 256


def is_face_crop(width: int, height: int) -> bool:
    """EDTalk's own crop size: such an input goes to the model whole and comes back whole."""
    return width == FACE_SIZE and height == FACE_SIZE


def crop_face(image: np.ndarray, box: CropBox, size: int = FACE_SIZE) -> np.ndarray:
    """The square `box` of `image` as a size x size uint8 RGB crop."""
    import cv2

    side = max(1, math.ceil(box.side))
    scale = box.side / side
    # crop at (about) native resolution with the sub-pixel offset, then shrink with area averaging
    m = np.array([[scale, 0, box.x0], [0, scale, box.y0]], dtype=np.float64)
    native = cv2.warpAffine(
        image, m, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    if side == size:
        return native
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(native, (size, size), interpolation=interpolation)


def feather_mask(size: int = FACE_SIZE, inner: float = 0.75) -> np.ndarray:
    """1 over the face, falling smoothly to 0 well inside the crop border.

    An ellipse around where the face sits in an EDTalk crop (see `boxes`), so hair, background
    and body keep the input's pixels and the seam runs through a smooth ramp, not a line.
    """
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    r = np.sqrt(((xx - 0.5) / 0.38) ** 2 + ((yy - 0.56) / 0.44) ** 2)
    t = np.clip((1.0 - r) / (1.0 - inner), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def paste_back(image: np.ndarray, face: np.ndarray, box: CropBox, mask: np.ndarray | None = None) -> np.ndarray:
    """A new frame with `face` blended into `box`; pixels outside the box's footprint are untouched."""
    import cv2

    h, w = image.shape[:2]
    size = face.shape[0]
    mask = feather_mask(size) if mask is None else mask
    x0, y0 = max(0, math.floor(box.x0)), max(0, math.floor(box.y0))
    x1, y1 = min(w, math.ceil(box.x0 + box.side)), min(h, math.ceil(box.y0 + box.side))
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    scale = box.side / size
    # face pixel (u, v) lands at frame (x0_box + u*scale, ...); expressed relative to the ROI origin
    m = np.array([[scale, 0, box.x0 - x0], [0, scale, box.y0 - y0]], dtype=np.float64)
    flags = cv2.INTER_LINEAR
    roi_size = (x1 - x0, y1 - y0)
    face_roi = cv2.warpAffine(face, m, roi_size, flags=flags, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    alpha = cv2.warpAffine(mask, m, roi_size, flags=flags, borderMode=cv2.BORDER_REPLICATE)[..., None]
    roi = out[y0:y1, x0:x1].astype(np.float32)
    blended = roi + alpha * (face_roi - roi)
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
