"""Per-frame stages: work on the composited full frames of an edit, a dub or a contact sheet, after paste-back.

A stage prepares from the input before the frame loop starts (the restorer's landmark pass over the
input frames, say), tells the size of the frames it gives, and is then applied to each chunk of
composited frames together with the input frame each was composited on (the index into what it
prepared from). The frame loop (`frame_loop.FrameLoop`) runs the stages an edit's options ask for, in
the order of the editor's factories, and times each as a stage of its own: its prepare, and its
applies (taken out of "render"). `enhance` is the first one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cmet_core.enhance.restore import Restorer
from cmet_core.enhance.stage import Enhancer, wanted
from cmet_core.faces.geometry import CropBox
from cmet_core.options import EditChoices
from cmet_core.stages import Progress, Stage


class FrameStage(Protocol):
    """One step on every composited frame, after paste-back and before the frame is written."""

    name: Stage
    """Its progress and timing stage (`stage_seconds`)."""

    def prepare(
        self,
        images: Iterable[np.ndarray],
        tracks: Sequence[Sequence[CropBox]],
        progress: Progress,
        shown: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Before the loop: `images` are the input's frames (decoded only when iterated), one per crop box of each
        face's track; `shown` (per face, per frame) where each face is edited (default: everywhere)."""

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """The size of the frames it gives for frames of `width` x `height`."""

    def apply(self, images: list[np.ndarray], indices: Sequence[int]) -> list[np.ndarray]:
        """A chunk of composited frames, each with the index of its input frame (into what `prepare` saw)."""


@dataclass(frozen=True)
class StageContext:
    """What a factory decides from whether its stage works on an edit."""

    options: EditChoices
    restorer: Restorer | None
    face_side: float
    """The face's crop box side in input pixels (the first frame's)."""
    face_size: int
    """The side of the generator's face crop."""


StageFactory = Callable[[StageContext], FrameStage | None]
"""A stage for this edit, or None where it does not apply."""


def enhance(context: StageContext) -> FrameStage | None:
    """The face restorer where `enhance/stage.py::wanted` says it works on this edit."""
    if not wanted(context.options, context.restorer, context.face_side, context.face_size):
        return None
    assert context.restorer is not None
    return Enhancer(context.restorer, context.options)


DEFAULT_STAGES: tuple[StageFactory, ...] = (enhance,)
"""The stages an editor offers, in the order they run on a frame."""


def chosen(factories: Iterable[StageFactory], context: StageContext) -> list[FrameStage]:
    """The stages that apply to this edit, in order."""
    return [stage for factory in factories if (stage := factory(context)) is not None]
