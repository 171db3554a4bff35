"""The two rectangles of the face code: a detected face and the square crop cut around it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels of the upright frame (it may reach past the frame border)."""

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
        """Intersection over union, the overlap measure that tells one face from another between frames."""
        inter = Box(max(self.x0, other.x0), max(self.y0, other.y0), min(self.x1, other.x1), min(self.y1, other.y1))
        if inter.w <= 0 or inter.h <= 0:
            return 0.0
        return inter.area / (self.area + other.area - inter.area)


@dataclass(frozen=True)
class CropBox:
    """A square crop in frame pixels, centre and side; it may reach past the frame border."""

    cx: float
    cy: float
    side: float

    @property
    def x0(self) -> float:
        return self.cx - self.side / 2

    @property
    def y0(self) -> float:
        return self.cy - self.side / 2

    @property
    def x1(self) -> float:
        return self.cx + self.side / 2

    @property
    def y1(self) -> float:
        return self.cy + self.side / 2

    def window(self, size: int, window: tuple[int, int, int, int] | None) -> CropBox:
        """The square part `window` (top, left, bottom, right, in pixels of this crop cut at `size` px) as a
        box in frame pixels; None: this box."""
        if window is None:
            return self
        top, left, bottom, right = window
        if bottom - top != right - left:
            raise ValueError(f"a crop window must be square, got {window}")
        scale = self.side / size
        return CropBox(
            self.x0 + (left + right) / 2 * scale, self.y0 + (top + bottom) / 2 * scale, (right - left) * scale
        )
