"""What an edit, a dub and a contact sheet share around the frame loop: what they ask of the editor
(`Parts`), how they count their time (`Clock`), and what an edit gives back (`EditResult`).

`Parts` is a protocol that `pipeline.Editor` meets, so the dub (`dubbing.py`) runs on the editor's
models without importing the module that dispatches to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cmet_core.backbones.base import Backbone
from cmet_core.edit.frame_stages import StageFactory
from cmet_core.emotion.library import EmotionLibrary
from cmet_core.emotion.speech_plan import EditTarget, SpeechPlan
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.emotion.voice import VoiceSegment
from cmet_core.enhance.restore import Restorer
from cmet_core.modelsets.sets import ModelSet
from cmet_core.networks.connector import Connector
from cmet_core.networks.runtime import LipForward
from cmet_core.options import Limits
from cmet_core.quality.report import QualityProblem, QualityReport
from cmet_core.stages import Progress, Stage

log = logging.getLogger(__name__)

__all__ = ["Clock", "EditResult", "Parts", "Progress", "no_progress"]


def no_progress(_stage: Stage, _done: int, _total: int) -> None:
    return None


class Parts(Protocol):
    """The loaded models an edit runs with (`pipeline.Editor`)."""

    models: ModelSet
    backbone: Backbone
    restorer: Restorer | None
    lips: LipForward | None
    connector: Connector
    face_size: int
    stages: Sequence[StageFactory]

    @property
    def connector_label(self) -> str: ...

    def plan(
        self,
        target: EditTarget,
        library: EmotionLibrary | None,
        audio: Path,
        duration_s: float,
        limits: Limits,
        *,
        has_audio: bool = True,
    ) -> SpeechPlan: ...


class Clock:
    """One edit's seconds per stage (`EditResult.stage_seconds`) and inside the networks."""

    def __init__(self) -> None:
        self.seconds: dict[Stage, float] = {}
        self.network = 0.0

    @contextmanager
    def stage(self, name: Stage) -> Iterator[None]:
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        log.info("stage %s took %.2f s", name, seconds, extra={"stage": name, "seconds": round(seconds, 3)})

    @contextmanager
    def networks(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.network += time.perf_counter() - start

    def move(self, seconds: float, source: Stage, to: Stage) -> None:
        """Count `seconds` spent inside stage `source` as stage `to` (a per-frame stage inside "render")."""
        self.seconds[source] -= seconds
        self.seconds[to] = self.seconds.get(to, 0.0) + seconds


@dataclass
class EditResult:
    output: Path
    frames: int
    fps: float
    duration_s: float
    width: int
    height: int
    source_frame: int
    face_crop_input: bool
    stage_seconds: dict[Stage, float] = field(default_factory=dict)
    network_seconds: float = 0.0
    connector: str = ""
    timeline: ClipTimeline | None = None
    voice: list[VoiceSegment] = field(default_factory=list)
    """For `from_audio`: the segments found in the voice (`timeline` is what they applied)."""
    quality: QualityReport | None = None
    """The output measured against the input, with `quality` on."""
    quality_problem: QualityProblem | None = None
    """With `quality` on, why there is no report (the `quality` extra is not installed)."""

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())
