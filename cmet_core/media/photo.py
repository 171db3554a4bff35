"""A still photo as an edit's input: any image PIL reads, upright (EXIF orientation applied), RGB.

A photo is told from a video by PIL recognising it: PyAV would open a JPEG too (as a one-frame
video), but a photo has no lip motion of its own, so it is only ever animated (`lips: speech`).
No torch: the API tells photos from videos at submission the same way.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cmet_core.errors import ErrorCode
from cmet_core.media.video import MediaError


def is_photo(path: Path) -> bool:
    """True for a file PIL recognises as an image (its header only is read), however large: a photo over
    the pixel limit is refused as a photo (`bad_photo`), not tried as a video."""
    return _recognised(path)


def looks_like_photo(head: bytes) -> bool:
    """`is_photo` on a file's first bytes (an uploaded asset's, read from storage): one rule for a photo,
    whether it comes as a part or as an asset."""
    return _recognised(io.BytesIO(head))


def _recognised(source: Path | io.BytesIO) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                return bool(image.format)
    except Image.DecompressionBombError:
        return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def photo_size(path: Path, max_pixels: float) -> tuple[int, int]:
    """(width, height) as displayed; refuses a photo over `max_pixels` before decoding it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                w, h = image.size
                if image.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that turn it by 90 degrees
                    w, h = h, w
    except Image.DecompressionBombError as exc:
        raise MediaError(ErrorCode.BAD_PHOTO, f"{path}: over the limit of {max_pixels:.4g} pixels ({exc})") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(ErrorCode.BAD_PHOTO, f"{path}: not an image PIL can read ({exc})") from None
    if w * h > max_pixels:
        raise MediaError(ErrorCode.BAD_PHOTO, f"{path}: {w}x{h} is over the limit of {max_pixels:.4g} pixels")
    return w, h


def read_photo(path: Path, max_pixels: float) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright."""
    photo_size(path, max_pixels)
    try:
        with Image.open(path) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
            return np.asarray(upright, dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise MediaError(ErrorCode.BAD_PHOTO, f"{path}: the image does not decode ({exc})") from None
