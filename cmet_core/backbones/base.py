"""The backbone interface: what the pipeline, the batcher and training ask of the generator network.

A backbone owns everything generator-specific: how the face is framed (`framing`), what an identity
source holds (`prepare_source`, opaque to every caller), what a frame's motion holds (`encode`: a
`MotionRecord` whose `exp` is the part the connector edits, plus whatever other per-frame codes the
network needs), and how it renders (`render`). Callers edit `exp`, replace the lip part for a dub, cut,
join and index records, and never name the other parts. Gains a network applies to its codes happen
inside its `render`, on the raw codes `encode` gave; smoothing over time, which needs a frame's
neighbours across the render's chunks, in `smooth_clip`, which the frame loop calls once per clip
(decision 0016). Where a backbone's lips always come from speech (`speech_lips`, PD-FGC), an edit of a
video takes its lip part from the video's own audio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from cmet_core.backbones.spec import Framing, Widths
from cmet_core.networks.runtime import SpeechLips

Source = Any
"""A prepared identity source: one backbone's own type (EDTalk's `SourceCache`), opaque to callers."""


@dataclass(frozen=True)
class MotionRecord:
    """Per-frame codes of N frames: `exp` (N, exp width), the part C-MET edits, and the backbone's
    other parts by name (each with N rows)."""

    exp: torch.Tensor
    parts: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = {k: v.shape[0] for k, v in self.parts.items() if v.shape[0] != self.exp.shape[0]}
        if bad:
            raise ValueError(f"motion parts must have {self.exp.shape[0]} rows like exp, got {bad}")

    def __len__(self) -> int:
        return int(self.exp.shape[0])

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> MotionRecord:
        """The same record with `fn` applied to every tensor (e.g. a device move, a dtype cast)."""
        return MotionRecord(fn(self.exp), {k: fn(v) for k, v in self.parts.items()})

    def index(self, rows: slice | torch.Tensor) -> MotionRecord:
        """The rows `rows` selects (a slice, or an index tensor that may repeat rows)."""
        return self.map(lambda t: t[rows])

    def with_exp(self, exp: torch.Tensor) -> MotionRecord:
        """This motion with an edited expression (same rows)."""
        return MotionRecord(exp, self.parts)

    def with_part(self, name: str, value: torch.Tensor) -> MotionRecord:
        """This motion with one named part replaced (a dub's lip part from speech)."""
        if name not in self.parts:
            raise KeyError(f"motion has no part {name!r} (parts: {', '.join(self.parts)})")
        return MotionRecord(self.exp, {**self.parts, name: value})

    def split(self, sizes: Sequence[int]) -> list[MotionRecord]:
        bounds = [0]
        for n in sizes:
            bounds.append(bounds[-1] + n)
        return [self.index(slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    @staticmethod
    def cat(records: Sequence[MotionRecord]) -> MotionRecord:
        """The rows of every record in order (all from one backbone, so with the same parts)."""
        names = list(records[0].parts)
        return MotionRecord(
            torch.cat([r.exp for r in records]), {k: torch.cat([r.parts[k] for r in records]) for k in names}
        )


class Backbone(Protocol):
    """A generator on a device: EDTalk's `EDTalkBackbone`, or a server's batching wrapper around one.

    Tensors in are float images (N,3,size,size) in [-1,1] cut as `framing` says; records out are
    float32 (on the backbone's device), images out float32 on the CPU.
    """

    @property
    def name(self) -> str: ...

    @property
    def framing(self) -> Framing: ...

    @property
    def widths(self) -> Widths: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def speech_lips(self) -> SpeechLips | None:
        """The backbone's own lips from speech, or None (EDTalk: its `encode` reads the lips off the frames,
        and a set's Audio2Lip makes a dub's). A backbone with its own has no visual lip code: `encode` gives
        a neutral lip part, which an edit replaces with the lips of the video's own audio."""
        ...

    def prepare_source(self, crops: torch.Tensor) -> Source:
        """The identity source from one crop (batch 1), prepared once per clip."""
        ...

    def source_motion(self, source: Source) -> MotionRecord:
        """The motion of the prepared source's own frame (one row), without encoding it again."""
        ...

    def encode(self, crops: torch.Tensor) -> MotionRecord:
        """Every frame's motion, raw (before any gain the network applies when rendering)."""
        ...

    def render(self, source: Source, motion: MotionRecord) -> torch.Tensor:
        """Images (N,3,H,W) about [-1,1]: `source` is one identity for every row, or one per row
        (`stack_sources`); `motion.exp` may be edited."""
        ...

    def smooth_clip(self, motion: MotionRecord) -> MotionRecord:
        """A whole clip's motion, one row per output frame in output order, as the network wants it before
        `render`: its smoothing over time (PD-FGC's mouth and pose). Called once per clip, never on
        independent stills (a contact sheet's cells); EDTalk returns it unchanged."""
        ...

    def switch_off(self, motion: MotionRecord, off: frozenset[str]) -> MotionRecord:
        """The motion with the eye motions `off` names switched off (`BackboneSpec.controls` says which
        exist; an edit refuses others before it starts)."""
        ...

    def take_eyes(self, motion: MotionRecord, driving: MotionRecord, parts: frozenset[str]) -> MotionRecord:
        """The motion with the eye motions `parts` names taken from `driving` (a driving clip's motion, one row per
        row of `motion`); `BackboneSpec.controls` says which exist."""
        ...

    def stack_sources(self, sources: Sequence[Source], rows: Sequence[int]) -> Source:
        """One per-row source from several: `sources[i]` repeated `rows[i]` times (a batcher mixing jobs)."""
        ...
