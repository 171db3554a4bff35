"""The tensor path of crop, paste-back and the restorer's warps (`faces/tensor_warp.py`, for CUDA) against
OpenCV's, on CPU tensors: within one grey level on a real frame, shrinking and enlarging, inside the frame
and past its border."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cmet_core.enhance import restore
from cmet_core.faces import tensor_warp, warp
from cmet_core.faces.geometry import CropBox
from cmet_core.media.video import read_frames
from cmet_core.media.yuv import Yuv420

BOXES = [
    CropBox(225.3, 200.7, 300.2),  # inside, shrunk to 256
    CropBox(500.4, 480.9, 600.6),  # past the border
    CropBox(100.2, 90.1, 260.7),
    CropBox(225.5, 225.5, 180.3),  # enlarged to 256
]


def _t(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()


def _u8(image: torch.Tensor) -> np.ndarray:
    return image.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def _apart(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small tensors: one torch thread is faster, and a loaded machine does not stall it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def frames(test_data: Path) -> list[np.ndarray]:
    image = next(read_frames(test_data / "video" / "obama_uncropped.mp4")).image
    return [image, cv2.resize(image, (800, 800), interpolation=cv2.INTER_CUBIC)]


@pytest.mark.parametrize("box", BOXES)
def test_crop_and_paste_back_match_opencv(frames: list[np.ndarray], box: CropBox) -> None:
    mask = warp.feather_mask(256)
    for frame in frames:
        crop = warp.crop_face(frame, box, 256)
        assert _apart(_u8(tensor_warp.crop_face(_t(frame), box, 256)), crop) <= 1
        pasted = tensor_warp.paste_back(_t(frame).to(torch.uint8), _t(crop), box, torch.from_numpy(mask))
        assert _apart(pasted.permute(1, 2, 0).numpy(), warp.paste_back(frame, crop, box, mask)) <= 1


def test_the_restorers_warps_match_opencv(frames: list[np.ndarray]) -> None:
    frame = frames[0]
    matrix = np.array([[0.9, 0.1, -20.3], [-0.1, 0.9, 10.7]])  # frame -> the 512 square, turned and shrunk
    aligned = restore.aligned_face(frame, matrix, 512)
    ours = tensor_warp.aligned_face(_t(frame), matrix, 512, restore.BORDER_RGB)
    assert _apart(_u8(ours), aligned) <= 1
    mask = restore.tile_mask(512)
    back = tensor_warp.paste_aligned(_t(frame).to(torch.uint8), _t(aligned), matrix, torch.from_numpy(mask))
    assert _apart(back.permute(1, 2, 0).numpy(), restore.paste_aligned(frame, aligned, matrix, mask)) <= 1


def test_paste_back_into_planes_moves_only_the_face_rectangle(frames: list[np.ndarray]) -> None:
    """Planes (`Yuv420`): outside the box's rectangle the frame is bit-identical, the device path agrees with
    OpenCV's within a grey level, and the face lands where RGB paste-back puts it."""
    frame = np.ascontiguousarray(frames[0][:448, :448])
    planes = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
    box, mask = BOXES[0], warp.feather_mask(256)
    face = np.full((256, 256, 3), (200, 40, 90), np.uint8)
    host = warp.paste_frame(Yuv420(planes.copy()), face, box, mask)
    device = tensor_warp.paste_frame(Yuv420(planes.copy()), _t(face), box, torch.from_numpy(mask))
    assert isinstance(host, Yuv420) and isinstance(device, Yuv420)
    assert _apart(host.data, device.data) <= 1
    a, b, c, d = host.rectangle(box.x0, box.y0, box.x1, box.y1)
    outside = np.ones(planes.shape, bool)
    outside[b:d, a:c] = False  # the Y rows of the rectangle, and its chroma rows below (loosely: whole rows)
    outside[448 + b // 4 : 448 + d // 4 + 1] = False
    outside[448 + 112 + b // 4 : 448 + 112 + d // 4 + 1] = False
    assert np.array_equal(host.data[outside], planes[outside])
    expected = warp.paste_back(Yuv420(planes).rgb(), face, box, mask)  # the same frame, pasted in RGB
    apart = np.abs(host.rgb().astype(np.int16) - expected)
    assert apart.mean() < 0.5 and apart.max() <= 8  # 4:2:0 chroma along the mask's ramp
