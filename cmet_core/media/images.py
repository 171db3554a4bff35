"""Face crops to EDTalk's tensors and back, shared by the edit pipeline and the previews."""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 RGB crops -> (N,3,H,W) float in [-1,1], the generator's input range."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0


def device_images(batch: torch.Tensor) -> torch.Tensor:
    """`to_images`' levels (0..255, whole numbers) as floats, left where they are (a GPU's paste-back)."""
    return ((batch.clamp(-1, 1) + 1) * 127.5).round()


def to_images(batch: torch.Tensor) -> np.ndarray:
    """(N,3,H,W) about [-1,1] -> uint8 RGB; a fixed mapping, so frames of one clip never flicker in level."""
    return ((batch.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
