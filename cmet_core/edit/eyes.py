"""Eye motion from a driving clip (`gaze: clip`, `blink: clip`): the clip's faces are tracked and encoded as
an input's are, and each output frame takes the eye code of the clip's frame at its time, the clip looping
when it is shorter than the output (as the PD-FGC Tester's eye stream wraps around). The backbone swaps in
the parts named (`Backbone.take_eyes`); the render's gain follows, as for the input's own eye code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cmet_core.backbones.base import MotionRecord
from cmet_core.edit.editing import Clock, Parts, Progress
from cmet_core.edit.passes import driving_choices, motion_passes
from cmet_core.options import EditChoices, Limits, probe_input


@dataclass(frozen=True)
class EyeClip:
    """A driving clip's motion, its frames' times and the eye motions taken from it."""

    motion: MotionRecord
    times: np.ndarray
    period_s: float
    """The clip's length: an output frame at time t reads the clip at t modulo this."""
    parts: frozenset[str]

    def at(self, times: np.ndarray) -> DrivenEyes:
        """The clip's motion at each output time (the frame showing then)."""
        wrapped = np.mod(np.asarray(times, dtype=np.float64), self.period_s)
        rows = np.clip(np.searchsorted(self.times, wrapped, side="right") - 1, 0, len(self.times) - 1)
        return DrivenEyes(self.motion.index(torch.from_numpy(rows)), self.parts)


@dataclass(frozen=True)
class DrivenEyes:
    """One row of driving motion per output frame, and which eye motions the render takes from it."""

    motion: MotionRecord
    parts: frozenset[str]


def eye_clip(
    editor: Parts, path: Path | None, options: EditChoices, limits: Limits, progress: Progress, clock: Clock
) -> EyeClip | None:
    """The driving clip's eye motion, or None when the edit takes none (its presence is checked before: a clip
    without `clip` choices, or `clip` choices without a clip, are refused by `EyeChoice.check_eye_video`)."""
    parts = options.eyes_from_clip()
    if not parts or path is None:
        return None
    choices = driving_choices(options)
    info = probe_input(path, choices, limits)
    found = motion_passes(
        editor.backbone, editor.face_size, path, info, choices, limits, progress, clock, source_index=0
    )
    step = float(np.median(np.diff(found.times))) if len(found.times) > 1 else 1 / float(info.fps)
    return EyeClip(found.motion, found.times - found.times[0], float(found.times[-1] - found.times[0]) + step, parts)
