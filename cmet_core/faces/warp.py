"""Cutting the face crop out of a frame and blending the rendered face back in.

OpenCV (installed with mediapipe, as opencv-contrib-python) does the resampling: one bilinear
`warpAffine` places pixels with sub-pixel accuracy, preceded by an `INTER_AREA` shrink whenever the
result is smaller than the source, so shrinking a large frame (or the face into a small box) averages
instead of aliasing. Parts of a crop past the frame border are edge-replicated, not black: EDTalk
never saw black bars in training (its crops are clamped to the frame), a hard black edge would pull
on its motion encoder, and paste-back only keeps what lies inside the frame anyway.
"""

from __future__ import annotations

import math

import numpy as np

from cmet_core.faces.framing import FACE_DROP_IN_CROP
from cmet_core.faces.geometry import CropBox
from cmet_core.media.yuv import Image, Yuv420

FACE_SIZE = 256
MASK_HALF_WIDTH = 0.38
MASK_HALF_HEIGHT = 0.42
"""The mask's ellipse, in crop sides, around where the face sits in a crop (`framing`): at the default margin it
is 1 over the whole face box and a little below it (an opening jaw), and it reaches 0 inside the crop border."""


def is_face_crop(width: int, height: int) -> bool:
    """EDTalk's own crop size: such an input goes to the model whole and comes back whole."""
    return width == FACE_SIZE and height == FACE_SIZE


def _place(
    src: np.ndarray, scale: float, offset: tuple[float, float], size: tuple[int, int], border: int
) -> np.ndarray:
    """`src` resampled onto a canvas of `size` (w, h) where each source pixel is `scale` canvas pixels wide and
    the source's top-left corner lands at `offset` (pixel edges, not centres, so crop and paste-back invert)."""
    import cv2  # deferred: cv2

    sx = sy = scale
    if scale < 1:
        h, w = src.shape[:2]
        nw, nh = max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))
        src = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = scale * w / nw, scale * h / nh
    m = np.array([[sx, 0.0, offset[0] + 0.5 * sx - 0.5], [0.0, sy, offset[1] + 0.5 * sy - 0.5]])
    return cv2.warpAffine(src, m, size, flags=cv2.INTER_LINEAR, borderMode=border)


def span(start: float, end: float, limit: int) -> tuple[int, int]:
    """The whole pixels [a, b) of 0..limit that the continuous span touches, never empty."""
    a = min(max(math.floor(start), 0), limit - 1)
    return a, min(max(math.ceil(end), a + 1), limit)


def crop_face(image: np.ndarray, box: CropBox, size: int = FACE_SIZE) -> np.ndarray:
    """The square `box` of an (H, W, 3) uint8 frame as a size x size uint8 crop."""
    import cv2  # deferred: cv2

    h, w = image.shape[:2]
    # read only the box's region (a pixel more for bilinear); its edge is the frame's edge wherever the box
    # leaves the frame
    x0, x1 = span(box.x0 - 1, box.x1 + 1, w)
    y0, y1 = span(box.y0 - 1, box.y1 + 1, h)
    scale = size / box.side
    offset = ((x0 - box.x0) * scale, (y0 - box.y0) * scale)
    return _place(image[y0:y1, x0:x1], scale, offset, (size, size), cv2.BORDER_REPLICATE)


def feather_mask(
    size: int = FACE_SIZE,
    margin: float = 0.25,
    *,
    half_width: float = MASK_HALF_WIDTH,
    half_height: float = MASK_HALF_HEIGHT,
    drop: float = FACE_DROP_IN_CROP,
) -> np.ndarray:
    """A float32 size x size blend weight: 1 over the face, a smooth ramp over the outer `margin` of an ellipse
    around it, 0 outside that and along the whole crop border.

    So hair, background and body keep the input's pixels and the seam runs through a ramp, not a line.
    The ellipse (in sides, its centre `drop` below the middle) defaults to where the face sits in a crop.
    """
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    r = np.sqrt(((xx - 0.5) / half_width) ** 2 + ((yy - 0.5 - drop) / half_height) ** 2)
    t = np.clip((1.0 - r) / margin, 0.0, 1.0)
    smoothstep: np.ndarray = t * t * (3 - 2 * t)
    return smoothstep.astype(np.float32)


WINDOW_MASK_HALF_WIDTH = 0.44
WINDOW_MASK_HALF_HEIGHT = 0.49
"""The mask's ellipse for a render of a window of the crop (PD-FGC's rows 0..191, columns 16..207): the crop's
ellipse widened to the window's scale, centred in it and cut to fit, since the window's lower edge runs
under the chin."""


def paste_mask(size: int, crop_input: bool, *, windowed: bool = False) -> np.ndarray:
    """The blend weight of a clip's paste-back: a face-crop input comes back whole, any other is feathered.
    A render that covers only a window of the crop (`windowed`) is feathered whatever the input: the input
    keeps its pixels around the window, so the window's edges must not show."""
    if windowed:
        return feather_mask(size, half_width=WINDOW_MASK_HALF_WIDTH, half_height=WINDOW_MASK_HALF_HEIGHT, drop=0.0)
    return np.ones((size, size), np.float32) if crop_input else feather_mask(size)


def paste_back(image: np.ndarray, face: np.ndarray, box: CropBox, mask: np.ndarray | None = None) -> np.ndarray:
    """A new frame with the square uint8 `face` resized into `box` and blended by `mask` (default: feathered).

    Pixels outside the box's footprint, and wherever the mask is 0, are bit-identical to `image`.
    """
    import cv2  # deferred: cv2

    size = face.shape[0]
    if face.shape != (size, size, 3) or face.dtype != np.uint8:
        raise ValueError(f"expected a square (N, N, 3) uint8 face, got {face.shape} {face.dtype}")
    mask = feather_mask(size) if mask is None else mask.astype(np.float32, copy=False)
    if mask.shape != (size, size):
        raise ValueError(f"mask must be {size}x{size} like the face, got {mask.shape}")
    h, w = image.shape[:2]
    out = image.copy()
    x0, y0, x1, y1 = footprint(box, w, h)
    if x1 <= x0 or y1 <= y0:
        return out
    scale = box.side / size
    offset = (box.x0 - x0, box.y0 - y0)
    roi_size = (x1 - x0, y1 - y0)
    rendered = _place(face, scale, offset, roi_size, cv2.BORDER_REPLICATE)
    alpha = _place(mask, scale, offset, roi_size, cv2.BORDER_CONSTANT)
    out[y0:y1, x0:x1] = blend(out[y0:y1, x0:x1], rendered, alpha)
    return out


def crop_frame(image: Image, box: CropBox, size: int = FACE_SIZE) -> np.ndarray:
    """`crop_face` of an RGB frame or of a frame's planes, of which only the box's rectangle turns RGB."""
    if not isinstance(image, Yuv420):
        return crop_face(image, box, size)
    rect = image.rectangle(box.x0 - 2, box.y0 - 2, box.x1 + 2, box.y1 + 2)
    return crop_face(image.region(rect), _moved(box, rect), size)


def paste_frame(image: Image, face: np.ndarray, box: CropBox, mask: np.ndarray) -> Image:
    """`paste_back` into an RGB frame (a new one) or into a frame's planes (in place: only the box's
    rectangle goes to RGB and back)."""
    if not isinstance(image, Yuv420):
        return paste_back(image, face, box, mask=mask)
    rect = image.rectangle(box.x0, box.y0, box.x1, box.y1)
    image.put(rect, paste_back(image.region(rect), face, _moved(box, rect), mask=mask))
    return image


def _moved(box: CropBox, rect: tuple[int, int, int, int]) -> CropBox:
    """`box` in the pixels of the rectangle that starts at (rect[0], rect[1])."""
    return CropBox(box.cx - rect[0], box.cy - rect[1], box.side)


def footprint(box: CropBox, width: int, height: int) -> tuple[int, int, int, int]:
    """The whole pixels (x0, y0, x1, y1) of a `width` x `height` frame that `box` touches (empty when it is
    outside)."""
    x0, x1 = max(0, math.floor(box.x0)), min(width, math.ceil(box.x1))
    y0, y1 = max(0, math.floor(box.y0)), min(height, math.ceil(box.y1))
    return x0, y0, x1, y1


def blend(under: np.ndarray, over: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 `under` + float `alpha` (H, W) x (`over` - `under`), rounded: where alpha is 0, `under` exactly.

    OpenCV's `blendLinear` in one pass (5x NumPy's speed on a 1080p face: 5 ms against 25); it divides by the
    weights' sum, so a pixel in a few thousand rounds the other way."""
    import cv2  # deferred: cv2

    weight = np.ascontiguousarray(alpha, np.float32)
    out: np.ndarray = cv2.blendLinear(np.ascontiguousarray(over), np.ascontiguousarray(under), weight, 1 - weight)
    return out
