"""Expression tracks: which edited 10-d coefficients each rendered frame gets."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from cmet_core.networks.connector import Connector, run_windows


class SpeechSchedule(Protocol):
    """A speech condition that changes over the clip (`cmet_core.emotion.timeline.TimelineSchedule`); times
    are seconds from the first frame."""

    def vectors(self, times_s: np.ndarray) -> np.ndarray:
        """(len(times), speech_dim) float32: the vector a connector window centred at each time reads."""
        ...

    def presence(self, times_s: np.ndarray) -> np.ndarray:
        """(len(times),) in [0, 1]: the share of the connector's delta a frame at each time keeps."""
        ...

    def settling(self, times_s: np.ndarray) -> np.ndarray:
        """(len(times),) in [0, 1]: how much of the smoothed delta (rather than the connector's own) a
        frame keeps; 1 across each transition, 0 well inside a segment."""
        ...

    @property
    def settle_sigma_s(self) -> float:
        """The width (Gaussian sigma, seconds) of that smoothing."""
        ...


def _gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    """Each column smoothed by a Gaussian of `sigma` rows, the ends held (no fade toward zero)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, ((radius, radius), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(values.shape[1])], axis=1)


def _interp(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.stack([np.interp(at, times, values[:, j]) for j in range(values.shape[1])], axis=1)


def expression_track(
    connector: Connector,
    ed_neu: torch.Tensor,
    times_s: np.ndarray,
    speech: torch.Tensor | SpeechSchedule,
    model_fps: float = 25.0,
) -> torch.Tensor:
    """Edited expression coefficients for every input frame, for any length from one frame up.

    The connector was trained on 25 fps windows, so the frames' own coefficients are resampled
    onto a 25 fps timeline, padded to whole windows by repeating the last frame, run through the
    autoregressive loop, and the predicted deltas are interpolated back to each frame's own time
    and added to that frame's coefficients. A 25 fps clip maps one to one; nothing is dropped.
    `speech` is one (1,1,D) vector, or a schedule: each window then reads the vector at its centre
    and each frame keeps `presence` of its delta (exactly none outside a timeline's segments).
    """
    t = connector.cfg.window
    times = np.asarray(times_s, dtype=np.float64)
    if times.ndim != 1 or times.shape[0] != ed_neu.shape[0] or times.shape[0] == 0:
        raise ValueError("expression_track needs one timestamp per frame and at least one frame")
    span = float(times[-1] - times[0])
    steps = int(np.floor(span * model_fps + 1e-6)) + 1
    model_times = times[0] + np.arange(steps) / model_fps
    values = ed_neu.detach().cpu().double().numpy()
    on_grid = values if steps == len(times) and np.allclose(model_times, times) else _interp(times, values, model_times)
    padded = np.concatenate([on_grid, np.repeat(on_grid[-1:], (-steps) % t, axis=0)])
    grid = torch.from_numpy(padded).to(ed_neu.dtype)
    if isinstance(speech, torch.Tensor):
        condition = speech
    else:
        centres = (np.arange(0, len(padded), t) + (t - 1) / 2) / model_fps
        condition = torch.from_numpy(speech.vectors(centres)).to(ed_neu.device).unsqueeze(1)
    _, delta = run_windows(connector, grid.to(condition.device), condition)
    delta_grid = delta[:steps].detach().cpu().double().numpy()
    if not isinstance(speech, torch.Tensor) and speech.settle_sigma_s > 0:
        # a window reads one vector, so across a transition the delta moves in window-sized steps
        weight = speech.settling(model_times - times[0])[:, None]
        if weight.any():
            smooth = _gaussian(delta_grid, speech.settle_sigma_s * model_fps)
            delta_grid = np.where(weight > 0, (1 - weight) * delta_grid + weight * smooth, delta_grid)
    delta_frames = delta_grid if on_grid is values else _interp(model_times, delta_grid, times)
    if not isinstance(speech, torch.Tensor):
        presence = speech.presence(times - times[0])
        delta_frames = np.where(presence[:, None] > 0, delta_frames * presence[:, None], 0.0)
    return ed_neu + torch.from_numpy(delta_frames).to(ed_neu)


def pulled(exp_in: torch.Tensor, exp: torch.Tensor, weights: np.ndarray, codes: np.ndarray) -> torch.Tensor:
    """`exp` plus each frame's move from its own code (`exp_in`) toward each reference code by its weight:
    row i gains sum_k weights[i, k] * (codes[k] - exp_in[i]). One reference at weight 1 puts every frame
    on it; 0.5 halfway; above 1 past it, away from the frame's own expression (decision 0040)."""
    w = torch.from_numpy(np.asarray(weights, dtype=np.float64)).to(exp_in)
    c = torch.from_numpy(np.asarray(codes, dtype=np.float64)).to(exp_in)
    return exp + w @ c - w.sum(dim=1, keepdim=True) * exp_in
