"""The restorer on its device, and moving faces between the frame and the restorer's aligned square.

`RestorerRunner` is to GFPGAN what a backbone (`EDTalkBackbone`) is to the generator: device, precision (bf16/fp16
autocast) and memory format from the same `RuntimeOptions`, fixed-size chunks. A server wraps it in
its batcher (`Restorer` is what the pipeline asks of either).
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from cmet_core.faces.warp import blend, feather_mask
from cmet_core.networks.gfpgan import GFPGAN, face_to_tensor, tensor_to_face
from cmet_core.networks.runtime import RuntimeOptions, inference, to_channels_last

BORDER_RGB = (132, 133, 135)
"""What lies outside the frame in an aligned face: the grey GFPGAN's aligner pads with ((135,133,132) in BGR)."""

TILE_MASK = {"half_width": 0.42, "half_height": 0.42, "drop": 0.05}
"""The blend ellipse in the aligned square: the template's face (eyes at 0.47, mouth at 0.72 of the side) with
forehead and chin, reaching 0 before the square's edges so no edge of it shows in the frame."""


class Restorer(Protocol):
    """What the pipeline asks of the face restorer: `RestorerRunner`, or a server's batching wrapper around one."""

    device: torch.device
    size: int

    def restore(self, faces: torch.Tensor) -> torch.Tensor: ...


class RestorerRunner:
    """Aligned faces (N,3,S,S) RGB in [-1,1] -> restored (N,3,S,S) float32 on the CPU, unclamped; fixed noise."""

    def __init__(self, net: GFPGAN, options: RuntimeOptions = RuntimeOptions()) -> None:
        self.options = options
        self.device = options.select()
        self.net = net.eval().to(self.device)
        if options.channels_last:
            to_channels_last(self.net)
        self.size = net.cfg.out_size
        self.batch = options.batch_for(self.device)

    def restore(self, faces: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        with inference(self.device, self.options.precision):
            for a in range(0, faces.shape[0], self.batch):
                x = faces[a : a + self.batch].to(self.device, non_blocking=True)
                if self.options.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append(self.net(x, fixed_noise=True).float().cpu())
        return torch.cat(out)


def aligned_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The `size` x `size` uint8 face `matrix` (frame -> square) cuts from an RGB frame."""
    import cv2  # deferred: cv2

    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=BORDER_RGB
    )


def restore_faces(restorer: Restorer, aligned: list[np.ndarray], strength: float) -> list[np.ndarray]:
    """One restorer call for a chunk's aligned faces, each blended `strength` over its unrestored self."""
    batch = torch.cat([face_to_tensor(f, bgr=False) for f in aligned])
    restored = restorer.restore(batch)
    ones = np.ones(aligned[0].shape[:2], np.float32) * np.float32(strength)
    return [blend(f, tensor_to_face(r, bgr=False), ones) for f, r in zip(aligned, restored, strict=True)]


def paste_aligned(image: np.ndarray, face: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A new frame with the aligned `face` warped back (inverse of `matrix`) and blended by its feathered `mask`.

    Pixels outside the face's footprint, and wherever the mask is 0, are bit-identical to `image`.
    """
    import cv2  # deferred: cv2

    size = face.shape[0]
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    h, w = image.shape[:2]
    x0, y0 = (max(0, math.floor(v)) for v in corners.min(0))
    x1, y1 = min(w, math.ceil(corners[:, 0].max()) + 1), min(h, math.ceil(corners[:, 1].max()) + 1)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    inverse[:, 2] -= (x0, y0)
    roi = (x1 - x0, y1 - y0)
    over = cv2.warpAffine(face, inverse, roi, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(mask, inverse, roi, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    out[y0:y1, x0:x1] = blend(out[y0:y1, x0:x1], over, alpha)
    return out


def tile_mask(size: int) -> np.ndarray:
    return feather_mask(size, 0.3, **TILE_MASK)
