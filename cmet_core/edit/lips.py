"""Lips from speech (dubbing): the rules for combining inputs and the per-frame plan (the choice,
`LipChoice`, is one of the edit options in `cmet_core.options`).

An edit normally keeps the input's own lip motion. With `lips: "speech"` the lips follow a
speech track through Audio2Lip instead, and the output lasts as long as that speech: 25 frames
per second, the rate Audio2Lip's lip track has (as in C-MET's `inference.py --opt A`). Head pose,
expression and the background of every output frame come from one frame of the pose source
(the input video, or a photo's `pose_video`); when the speech outlasts it, `pose_fill` says how
the pose source goes on. The plan is computed up front from the pose source's timestamps, so
rendering is a loop over small records. No torch here: the API checks the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.mel import FPS as LIP_FPS


def check_inputs(lips: str, *, photo: bool, speech_track: bool, pose_video: bool, follows_voice: bool = False) -> None:
    """Refuse every combination of inputs that cannot make a dub (the same rules at submission and in the edit).

    `follows_voice` (`emotion: "from_audio"`): a speech track with the video's own lips is the voice the
    face follows, aligned to the video, and the output's audio."""
    if photo and lips != "speech":
        raise InputError(
            ErrorCode.PHOTO_NEEDS_SPEECH, "a photo has no lip motion of its own: give lips: speech and a speech track"
        )
    if lips == "speech" and not speech_track:
        raise InputError(ErrorCode.SPEECH_TRACK_MISSING, "lips: speech needs a speech track to follow")
    if lips != "speech" and ((speech_track and not follows_voice) or pose_video):
        given = "a pose video" if pose_video else "a speech track"
        raise InputError(
            ErrorCode.SPEECH_TRACK_UNUSED, f'{given} is only used with lips: speech (or emotion "from_audio")'
        )
    if pose_video and not photo:
        raise InputError(
            ErrorCode.POSE_VIDEO_NEEDS_PHOTO, "a pose video drives a photo; a video input gives its own pose"
        )


@dataclass(frozen=True)
class PlannedFrame:
    """One output frame: which pose-source frame gives its pose and expression, which input frame
    is its background (always 0 for a photo), and which row of the lip track shapes its mouth."""

    pose: int
    background: int
    lip: int


def on_lip_grid(times_s: np.ndarray) -> np.ndarray:
    """Pose-source frames seen at 25 fps: for each tick from the first frame to the last, the frame
    showing at that moment (the latest one not after it). A 25 fps source maps one to one."""
    times = np.asarray(times_s, dtype=np.float64)
    if times.size == 0:
        raise ValueError("the pose source has no frames")
    span = float(times[-1] - times[0])
    ticks = times[0] + np.arange(int(np.floor(span * LIP_FPS + 1e-6)) + 1) / LIP_FPS
    showing: np.ndarray = np.clip(np.searchsorted(times, ticks + 1e-6, side="right") - 1, 0, times.size - 1)
    return showing


def filled(sequence: np.ndarray, length: int, fill: str) -> np.ndarray:
    """`sequence` extended or cut to `length`: bounce (0..n-1, n-2..1, 0..), loop (0..n-1, 0..) or hold (n-1)."""
    n = sequence.shape[0]
    i = np.arange(length)
    if n == 1 or fill == "hold":
        at = np.minimum(i, n - 1)
    elif fill == "loop":
        at = i % n
    elif fill == "bounce":
        r = i % (2 * n - 2)
        at = np.where(r < n, r, 2 * n - 2 - r)
    else:
        raise ValueError(f"unknown pose_fill {fill!r}")
    out: np.ndarray = sequence[at]
    return out


def plan(pose_times_s: np.ndarray, lip_frames: int, fill: str, *, photo: bool) -> list[PlannedFrame]:
    """The output's frames: one per lip-track row, the pose source resampled to 25 fps and filled."""
    poses = filled(on_lip_grid(pose_times_s), lip_frames, fill)
    return [PlannedFrame(int(p), 0 if photo else int(p), i) for i, p in enumerate(poses)]
