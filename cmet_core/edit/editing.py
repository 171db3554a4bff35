"""What an edit, a dub and a contact sheet share around the frame loop: what they ask of the editor
(`Parts`), how they count their time (`Clock`), and what an edit gives back (`EditResult`).

`Parts` is a protocol that `pipeline.Editor` meets, so the dub (`dubbing.py`) runs on the editor's
models without importing the module that dispatches to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cmet_core.backbones.base import Backbone
from cmet_core.backbones.registry import backbone_names, backbone_spec
from cmet_core.edit.frame_stages import StageFactory
from cmet_core.emotion.library import EmotionLibrary
from cmet_core.emotion.speech_plan import EditTarget, SpeechPlan
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.emotion.voice import VoiceSegment
from cmet_core.enhance.restore import Restorer
from cmet_core.errors import ErrorCode, InputError
from cmet_core.faces.turns import SpeakerTurn
from cmet_core.meter import NETWORKS, step
from cmet_core.modelsets.sets import ModelSet, no_connector
from cmet_core.networks.connector import Connector
from cmet_core.networks.runtime import SpeechLips
from cmet_core.options import EyeChoice, Limits
from cmet_core.quality.report import QualityProblem, QualityReport
from cmet_core.stages import Progress, Stage

log = logging.getLogger(__name__)

__all__ = ["Clock", "EditResult", "Parts", "Progress", "check_eyes", "connector_of", "no_progress"]


def no_progress(_stage: Stage, _done: int, _total: int) -> None:
    return None


class Parts(Protocol):
    """The loaded models an edit runs with (`pipeline.Editor`)."""

    models: ModelSet
    backbone: Backbone
    restorer: Restorer | None
    lips: SpeechLips | None
    connector: Connector | None
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


def connector_of(editor: Parts) -> Connector:
    """The editor's connector, or `connector_missing` naming the command that trains one (a set of a
    backbone nobody published a connector for)."""
    if editor.connector is None:
        raise no_connector(editor.models.path.name, editor.models.backbone)
    return editor.connector


def check_eyes(backbone: Backbone, options: EyeChoice) -> None:
    """Refuse eye controls the backbone does not have (`eye_control_unsupported`, naming the backbones
    that have them), before anything is decoded."""
    used = options.eye_controls()
    missing = used - backbone_spec(backbone.name).controls
    if missing:
        able = [name for name in backbone_names() if used <= backbone_spec(name).controls]
        said = " and ".join(f"{name} {getattr(options, name)}" for name in sorted(missing))
        raise InputError(
            ErrorCode.EYE_CONTROL_UNSUPPORTED,
            f"{said} needs a backbone with its own eye codes "
            f"({', '.join(able) or 'none registered'}); this model set's backbone is {backbone.name}",
        )


class Clock:
    """One edit's seconds per stage (`EditResult.stage_seconds`) and inside the networks."""

    def __init__(self) -> None:
        self.seconds: dict[Stage, float] = {}
        self.network = 0.0
        self._lock = threading.Lock()  # the frame loop's threads both run networks

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
        with step(NETWORKS):
            yield
        with self._lock:
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
    faces: list[int] = field(default_factory=list)
    """With `faces`: each selecting entry's face, by its place from the left (a speaker's are in `speakers`)."""
    speakers: list[SpeakerTurn] = field(default_factory=list)
    """With a `select: "speaker"` entry: which face spoke when (and got that entry's edit)."""

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())
