"""What PD-FGC's Tester does between its encoders and its generator (kit SPEC_pdfgc.md section 7), in
one place: which driving frame each output frame reads, the gains, the temporal smoothing, the style
vector's order, and the uint8 conversion of a render.

Gains and smoothing act on the raw codes the encoders return: mouth x1.5 and a zero-padded 3-tap
Gaussian over time (the first and last frames are attenuated, not renormalised); emotion and eye
x1.2; pose a 3-tap mean whose edge frames average the two frames they have. A C-MET edit adds its
delta to the raw emotion code, before the x1.2 (the kit's documented choice, `edit_*` goldens).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BATCH = 8
"""The Tester's output frames per batch: driving streams restart their wrap-around at each batch."""
MOUTH_GAIN, EMO_GAIN, EYE_GAIN = 1.5, 1.2, 1.2
GAZE_DIMS, BLINK_DIMS = (2, 3), (0, 1, 4, 5)
"""The eye code's gaze and blink parts (the Tester's `--gaze` / `--blink` switches mask them)."""
EYE_PARTS = {"gaze": GAZE_DIMS, "blink": BLINK_DIMS}
"""An edit's eye controls (`gaze: off`, `blink: off`) -> the eye code's dimensions they zero, as the
Tester's switches do."""


def drive_rows(frames: int, length: int, batch: int = BATCH) -> np.ndarray:
    """Per output frame, the row of a driving stream of `length` frames that it reads (the Tester's
    per-batch wrap-around: a batch starting at row s takes s.. and wraps to 0 past the end)."""
    rows: list[int] = []
    for start in range(0, frames, batch):
        s, e = start % length, (start + batch) % length
        taken = list(range(s, e)) if s < e else [*range(s, length), *range(e)]
        rows.extend(taken[: min(batch, frames - start)])
    return np.asarray(rows, dtype=np.int64)


def smooth_pose(pose: torch.Tensor) -> torch.Tensor:
    """3-tap temporal mean; the first and last frames average the two frames they have."""
    n = pose.shape[0]
    return torch.stack([pose[max(0, i - 1) : i + 2].mean(dim=0) for i in range(n)])


def _gaussian3() -> torch.Tensor:
    taps = np.exp(-(np.array([-1.0, 0.0, 1.0]) ** 2) / 2.0)
    return torch.from_numpy((taps / taps.sum()).astype(np.float32))


def smooth_mouth(mouth: torch.Tensor) -> torch.Tensor:
    """3-tap Gaussian (0.274, 0.452, 0.274) over time with zero padding: the edge frames shrink."""
    x = mouth.t().unsqueeze(1)  # (D, 1, N): each dimension a sequence
    out = F.conv1d(x, _gaussian3().to(mouth.dtype).reshape(1, 1, 3), padding=1)
    return out.squeeze(1).t()


def gained(mouth: torch.Tensor, emo: torch.Tensor, eye: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Codes of N frames, already smoothed over the clip -> the (N, 542) codes the generator takes after the
    identity feature: `[mouth x1.5, emotion x1.2, eye x1.2, pose]` (kit trap T4: the style's order)."""
    return torch.cat([mouth * MOUTH_GAIN, emo * EMO_GAIN, eye * EYE_GAIN, pose], dim=1)


def style_codes(mouth: torch.Tensor, emo: torch.Tensor, eye: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """Raw codes of a clip's N frames -> the (N, 542) codes after the identity feature, smoothed over the clip
    and gained as the Tester does (the backbone splits the two: `smooth_mouth`/`smooth_pose` over the whole
    clip, `gained` per rendered chunk; the smoothing is linear, so the mouth's gain may follow it)."""
    return gained(smooth_mouth(mouth), emo, eye, smooth_pose(pose))


def render_u8(images: torch.Tensor) -> np.ndarray:
    """Renders (N,3,H,W) in (-1,1) -> uint8 (N,H,W,3) **BGR**, `(x+1)/2*255` truncated (not rounded)."""
    x = images.detach().cpu().permute(0, 2, 3, 1).numpy()
    u8: np.ndarray = ((x + 1) / 2 * 255).astype(np.uint8)
    return np.ascontiguousarray(u8[..., ::-1])
