"""Decoded frames kept as the decoder gives them (I420: yuv420p planes), with only the face's rectangle
turned into RGB and back.

Why: at 1080p the face's crop box covers a fraction of the frame, yet converting the whole frame to
RGB after decoding and back to YUV before encoding cost two full-frame colour conversions per frame
and pass. Here the rest of the frame goes from the decoder to the encoder untouched, bit for bit.
OpenCV converts the rectangle (BT.601, limited range, as the decoder's RGB is); a rectangle's
pixels that paste-back leaves alone come back within a grey level or so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np

JPEG_RANGE = 2
"""`AVCOL_RANGE_JPEG`: full-range YUV, which OpenCV's conversions do not read; such frames stay RGB."""


@dataclass
class Yuv420:
    """One frame's packed I420 planes: `data` is (H * 3 / 2, W) uint8, Y then U then V (PyAV's `yuv420p` array)."""

    data: np.ndarray

    @classmethod
    def of(cls, frame: av.VideoFrame) -> Yuv420 | None:
        """The frame's planes, or None where this path does not apply (rotated, odd-sized, another format)."""
        if frame.format.name != "yuv420p" or frame.rotation or frame.width % 2 or frame.height % 2:
            return None
        if frame.color_range == JPEG_RANGE:
            return None
        return cls(frame.to_ndarray(format="yuv420p"))

    @property
    def height(self) -> int:
        return int(self.data.shape[0] * 2 // 3)

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def _planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h, w = self.height, self.width
        flat = self.data.reshape(-1)
        quarter = h * w // 4
        y = self.data[:h]
        u = flat[h * w : h * w + quarter].reshape(h // 2, w // 2)
        v = flat[h * w + quarter :].reshape(h // 2, w // 2)
        return y, u, v

    def rgb(self) -> np.ndarray:
        """The whole frame as (H, W, 3) uint8 RGB."""
        import cv2  # deferred: cv2

        out: np.ndarray = cv2.cvtColor(self.data, cv2.COLOR_YUV2RGB_I420)
        return out

    def rectangle(self, x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        """The even-aligned pixel rectangle (a, b, c, d) inside the frame that covers [x0, x1) x [y0, y1)."""
        a = min(max(2 * math.floor(x0 / 2), 0), self.width - 2)
        b = min(max(2 * math.floor(y0 / 2), 0), self.height - 2)
        c = min(max(2 * math.ceil(x1 / 2), a + 2), self.width)
        d = min(max(2 * math.ceil(y1 / 2), b + 2), self.height)
        return a, b, c, d

    def region(self, rect: tuple[int, int, int, int]) -> np.ndarray:
        """The `rectangle` as (h, w, 3) uint8 RGB."""
        import cv2  # deferred: cv2

        a, b, c, d = rect
        y, u, v = self._planes()
        packed = np.concatenate(
            [y[b:d, a:c].reshape(-1), u[b // 2 : d // 2, a // 2 : c // 2].reshape(-1)]
            + [v[b // 2 : d // 2, a // 2 : c // 2].reshape(-1)]
        ).reshape((d - b) * 3 // 2, c - a)
        out: np.ndarray = cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_I420)
        return out

    def put(self, rect: tuple[int, int, int, int], rgb: np.ndarray) -> None:
        """Write RGB pixels over the `rectangle` (the shape `region` gave)."""
        import cv2  # deferred: cv2

        a, b, c, d = rect
        h, w = d - b, c - a
        packed = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).reshape(-1)
        y, u, v = self._planes()
        q = h * w // 4
        y[b:d, a:c] = packed[: h * w].reshape(h, w)
        u[b // 2 : d // 2, a // 2 : c // 2] = packed[h * w : h * w + q].reshape(h // 2, w // 2)
        v[b // 2 : d // 2, a // 2 : c // 2] = packed[h * w + q :].reshape(h // 2, w // 2)


Image = np.ndarray | Yuv420
"""A frame as the frame loop carries it: RGB, or the decoder's planes (only the face turned RGB)."""


def as_rgb(image: Image) -> np.ndarray:
    """The frame in RGB (a whole-frame conversion for planes: for the per-frame stages that need it)."""
    return image.rgb() if isinstance(image, Yuv420) else image
