"""The crop, the paste-back and the restorer's warps as torch tensor operations, for frames on a GPU.

Why: on CUDA the networks take a few milliseconds a frame and OpenCV's warps on the CPU decide the
rate; here only the face's rectangle moves between host and device. They follow the OpenCV path
(`warp.py`, `enhance/restore.py`) step for step: an area shrink where the result is smaller
(OpenCV's `INTER_AREA` weights, as two small matrix products), then bilinear sampling at the same
pixel-centre positions as `warpAffine` (`grid_sample` with `align_corners=True`), the border
replicated or a constant, and the same blend. OpenCV samples at 1/32 pixel in fixed point and rounds
between steps, this path in float: they agree within a grey level
(`tests/cmet_core/test_tensor_warp.py`, on CPU tensors).

Images are (C, H, W) float tensors in 0..255 on any device; masks (H, W).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from cmet_core.faces.geometry import CropBox
from cmet_core.faces.warp import footprint, span
from cmet_core.media.yuv import Image, Yuv420

Border = Literal["replicate", "constant"]


def area_weights(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_in): each output pixel the mean of the input span it covers, partial pixels by their share."""
    scale = n_in / n_out
    start = torch.arange(n_out, dtype=torch.float64, device=device)[:, None] * scale
    j = torch.arange(n_in, dtype=torch.float64, device=device)[None, :]
    overlap = (torch.minimum(j + 1, start + scale) - torch.maximum(j, start)).clamp(min=0)
    return (overlap / scale).float()


def resize_area(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """OpenCV's `INTER_AREA` shrink of a (C, H, W) image to `width` x `height`."""
    rows = area_weights(image.shape[1], height, image.device)
    cols = area_weights(image.shape[2], width, image.device)
    return rows @ image @ cols.T


def warp_affine(
    image: torch.Tensor,
    matrix: np.ndarray,
    size: tuple[int, int],
    border: Border,
    value: float | tuple[float, ...] = 0.0,
) -> torch.Tensor:
    """`cv2.warpAffine(image, matrix, size, INTER_LINEAR)`: `matrix` maps source pixels to output pixels (2x3),
    `size` is (w, h); outside the source the border is replicated or `value`."""
    inverse = _inverted(matrix)
    w, h = size
    c, in_h, in_w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=image.device),
        torch.arange(w, dtype=torch.float64, device=image.device),
        indexing="ij",
    )
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    grid = torch.stack([2 * sx / max(in_w - 1, 1) - 1, 2 * sy / max(in_h - 1, 1) - 1], dim=-1)[None].float()
    if border == "replicate":
        return F.grid_sample(image[None], grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    fill = torch.as_tensor(value, dtype=image.dtype, device=image.device).reshape(-1, 1, 1).expand(c, 1, 1)
    moved = F.grid_sample((image - fill)[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return moved[0] + fill


def _inverted(matrix: np.ndarray) -> np.ndarray:
    """`cv2.invertAffineTransform`."""
    a = np.asarray(matrix, np.float64)
    linear = np.linalg.inv(a[:, :2])
    return np.hstack([linear, -linear @ a[:, 2:]])


def place(
    image: torch.Tensor, scale: float, offset: tuple[float, float], size: tuple[int, int], border: Border
) -> torch.Tensor:
    """`warp._place`: `image` resampled onto a canvas of `size` (w, h), each source pixel `scale` canvas pixels
    wide, its top-left corner at `offset`."""
    sx = sy = scale
    if scale < 1:
        h, w = image.shape[1:]
        nw, nh = max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))
        image = resize_area(image, nw, nh)
        sx, sy = scale * w / nw, scale * h / nh
    m = np.array([[sx, 0.0, offset[0] + 0.5 * sx - 0.5], [0.0, sy, offset[1] + 0.5 * sy - 0.5]])
    return warp_affine(image, m, size, border)


def crop_face(image: torch.Tensor, box: CropBox, size: int) -> torch.Tensor:
    """`warp.crop_face` of a (3, H, W) frame: the square `box` as a (3, size, size) float crop."""
    h, w = image.shape[1:]
    x0, x1 = span(box.x0 - 1, box.x1 + 1, w)
    y0, y1 = span(box.y0 - 1, box.y1 + 1, h)
    scale = size / box.side
    offset = ((x0 - box.x0) * scale, (y0 - box.y0) * scale)
    return place(image[:, y0:y1, x0:x1], scale, offset, (size, size), "replicate")


def blend(under: torch.Tensor, over: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """`warp.blend`: `under` + `alpha` x (`over` - `under`), rounded to uint8; where alpha is 0, `under` exactly."""
    return (under + alpha[None] * (over - under)).round().clamp(0, 255).to(torch.uint8)


def paste_back(image: torch.Tensor, face: torch.Tensor, box: CropBox, mask: torch.Tensor) -> torch.Tensor:
    """`warp.paste_back` of a (3, H, W) uint8 frame: a new frame with the (3, S, S) `face` (0..255) resized
    into `box` and blended by the (S, S) `mask`."""
    size = face.shape[-1]
    h, w = image.shape[1:]
    out = image.clone()
    x0, y0, x1, y1 = footprint(box, w, h)
    if x1 <= x0 or y1 <= y0:
        return out
    scale = box.side / size
    offset, roi = (box.x0 - x0, box.y0 - y0), (x1 - x0, y1 - y0)
    over = place(face, scale, offset, roi, "replicate")
    alpha = place(mask[None], scale, offset, roi, "constant")[0]
    out[:, y0:y1, x0:x1] = blend(image[:, y0:y1, x0:x1].float(), over, alpha)
    return out


def paste_frame(image: Image, face: torch.Tensor, box: CropBox, mask: torch.Tensor) -> Image:
    """`warp.paste_frame` with the blend on `face`'s device: only the box's rectangle of the frame (RGB, or
    the planes' rectangle turned RGB) travels there and back. Planes are written in place."""
    if isinstance(image, Yuv420):
        rect = image.rectangle(box.x0, box.y0, box.x1, box.y1)
        region = image.region(rect)
    else:
        h, w = image.shape[:2]
        (a, c), (b, d) = span(box.x0, box.x1, w), span(box.y0, box.y1, h)
        rect = (a, b, c, d)
        region = image[b:d, a:c]
    moved = CropBox(box.cx - rect[0], box.cy - rect[1], box.side)
    on_device = torch.from_numpy(np.ascontiguousarray(region)).to(face.device).permute(2, 0, 1)
    pasted = paste_back(on_device, face, moved, mask).permute(1, 2, 0).cpu().numpy()
    if isinstance(image, Yuv420):
        image.put(rect, pasted)
        return image
    out = image.copy()
    out[rect[1] : rect[3], rect[0] : rect[2]] = pasted
    return out


def aligned_face(image: torch.Tensor, matrix: np.ndarray, size: int, border: tuple[float, ...]) -> torch.Tensor:
    """`restore.aligned_face`: the (3, size, size) face `matrix` (frame -> square) cuts, `border` outside."""
    return warp_affine(image.float(), matrix, (size, size), "constant", border)


def paste_aligned(image: torch.Tensor, face: torch.Tensor, matrix: np.ndarray, mask: torch.Tensor) -> torch.Tensor:
    """`restore.paste_aligned` of a (3, H, W) uint8 frame: the aligned `face` warped back and blended by `mask`."""
    size = face.shape[-1]
    inverse = _inverted(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    h, w = image.shape[1:]
    x0, y0 = (max(0, math.floor(v)) for v in corners.min(0))
    x1, y1 = min(w, math.ceil(corners[:, 0].max()) + 1), min(h, math.ceil(corners[:, 1].max()) + 1)
    out = image.clone()
    if x1 <= x0 or y1 <= y0:
        return out
    inverse[:, 2] -= (x0, y0)  # square -> the rectangle's pixels: the forward map of this warp
    roi = (x1 - x0, y1 - y0)
    over = warp_affine(face, inverse, roi, "replicate")
    alpha = warp_affine(mask[None], inverse, roi, "constant")[0]
    out[:, y0:y1, x0:x1] = blend(image[:, y0:y1, x0:x1].float(), over, alpha)
    return out
