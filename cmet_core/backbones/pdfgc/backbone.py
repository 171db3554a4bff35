"""PD-FGC behind the backbone interface (decision 0016): its four networks encode and render on a device.

Its motion record holds `exp`, the raw 30-d emotion code C-MET edits, and the raw parts `mouth` (500, from
speech through its audio encoder), `eye` (6) and `pose` (6); its source is a `PDFGCSource` (the identity
feature and map). Where the Tester's gains and smoothing happen: the smoothing over time (mouth and pose)
in `smooth_clip`, once per clip, and the gains (mouth x1.5, emotion and eye x1.2) in `render`, both with
`codes.py`'s functions. So a C-MET edit of `exp` is added before the x1.2, as the kit defines it.

The pipeline cuts the fixed window of PD-FGC's crop (`FRAMING`) straight out of the frame at 224 px, so
`encode` and `prepare_source` take the network's input as it is; the render covers that window.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cmet_core.backbones.base import MotionRecord
from cmet_core.backbones.pdfgc.codes import EYE_PARTS, gained, smooth_mouth, smooth_pose
from cmet_core.backbones.pdfgc.entry import FRAMING, MOUTH_PART, NAME, pdfgc_widths
from cmet_core.backbones.pdfgc.frontend import HOP, speech_windows
from cmet_core.backbones.pdfgc.network import PDFGC
from cmet_core.networks.runtime import RuntimeOptions, SpeechLips, inference, lips_at

WINDOW_CENTRE_S = 0.065
"""Window i of the audio front end reads mel rows 4i..4i+19, centred on the audio at 0.04 i + 0.065 s
(SPEC section 4): a frame at time t takes the window centred nearest t (the Tester pairs window i with
frame i, 65 ms early)."""
MIN_SAMPLES = 13 * HOP
"""The shortest speech that gives one window (20 mel rows); shorter speech is padded with silence."""


@dataclass(frozen=True)
class PDFGCSource:
    """The identity: `id_feat` (B, 2048) opens the style vector, `id_map` (B, 512, 7, 7) replaces the
    generator's constant input; `motion` is the source frame's own raw motion (B rows)."""

    id_feat: torch.Tensor
    id_map: torch.Tensor
    motion: MotionRecord


class PDFGCBackbone:
    """PD-FGC's `Backbone`. The runtime options' device, batch and precision apply; channels-last and
    compile do not (the generator's modulated convolutions are grouped per sample)."""

    name = NAME
    framing = FRAMING

    def __init__(self, net: PDFGC, options: RuntimeOptions = RuntimeOptions()) -> None:
        self.options = options
        self.device = options.select()
        self.net = net.eval().to(self.device)
        self.widths = pdfgc_widths(net.config.to_dict())
        self.batch = options.batch_for(self.device)
        mels = net.config.audio.mels
        self.silence = self._mouth(torch.zeros(1, 1, mels, 20))
        """The mouth code of a silent window: the lip part `encode` gives (no speech, a closed mouth)."""
        self.speech_lips = SpeechLips(windows=_windows, forward=self._mouth, finish=_frames)

    def _context(self) -> contextlib.AbstractContextManager[None]:
        return inference(self.device, self.options.precision)

    def _chunks(self, n: int) -> Iterator[tuple[int, int]]:
        for start in range(0, n, self.batch):
            yield start, min(start + self.batch, n)

    def _mouth(self, windows: torch.Tensor) -> torch.Tensor:
        """Speech windows (N, 1, 80, 20) -> raw mouth codes (N, 500), float32 on the CPU."""
        out: list[torch.Tensor] = []
        with self._context():
            for a, b in self._chunks(windows.shape[0]):
                out.append(self.net.net_audio(windows[a:b].to(self.device))[1].float().cpu())
        return torch.cat(out)

    def _motion(self, crops: torch.Tensor) -> MotionRecord:
        pose, eye, emo, _ = self.net.net_motion(crops.to(self.device))
        parts = {MOUTH_PART: self.silence.to(self.device).expand(len(emo), -1), "eye": eye, "pose": pose}
        return MotionRecord(emo, parts).map(lambda t: t.float().cpu())

    def prepare_source(self, crops: torch.Tensor) -> PDFGCSource:
        with self._context():
            id_feat, id_map = self.net.net_appearance(crops.to(self.device))
            return PDFGCSource(id_feat.float(), id_map.float(), self._motion(crops))

    def source_motion(self, source: PDFGCSource) -> MotionRecord:
        return source.motion

    def encode(self, crops: torch.Tensor) -> MotionRecord:
        with self._context():
            return MotionRecord.cat([self._motion(crops[a:b]) for a, b in self._chunks(crops.shape[0])])

    def smooth_clip(self, motion: MotionRecord) -> MotionRecord:
        smoothed = {MOUTH_PART: smooth_mouth(motion.parts[MOUTH_PART]), "pose": smooth_pose(motion.parts["pose"])}
        return MotionRecord(motion.exp, {**motion.parts, **smoothed})

    def switch_off(self, motion: MotionRecord, off: frozenset[str]) -> MotionRecord:
        eye = motion.parts["eye"].clone()
        for name in off:
            eye[:, list(EYE_PARTS[name])] = 0.0
        return motion.with_part("eye", eye)

    def take_eyes(self, motion: MotionRecord, driving: MotionRecord, parts: frozenset[str]) -> MotionRecord:
        """The eye code's gaze or blink dimensions (`EYE_PARTS`) from the driving clip's, raw (the x1.2 follows in
        `render`), as the Tester's eye stream gives them."""
        eye = motion.parts["eye"].clone()
        for name in parts:
            dims = list(EYE_PARTS[name])
            eye[:, dims] = driving.parts["eye"][:, dims].to(eye)
        return motion.with_part("eye", eye)

    def render(self, source: PDFGCSource, motion: MotionRecord) -> torch.Tensor:
        """Images (N,3,224,224) float32 on the CPU in (-1,1), covering the crop's window.

        `source` is one identity for every row, or one per row (a batcher mixing jobs)."""
        per_row = source.id_feat.shape[0] > 1
        out: list[torch.Tensor] = []
        with self._context():
            for a, b in self._chunks(len(motion)):
                m = motion.index(slice(a, b)).map(lambda t: t.to(self.device))
                codes = gained(m.parts[MOUTH_PART], m.exp, m.parts["eye"], m.parts["pose"])
                feat, id_map = (
                    t[a:b] if per_row else t.expand(b - a, *t.shape[1:]) for t in (source.id_feat, source.id_map)
                )
                style = torch.cat([feat, codes], dim=1)
                out.append(self.net.net_generator(style, id_map).float().cpu())
        return torch.cat(out)

    def stack_sources(self, sources: Sequence[PDFGCSource], rows: Sequence[int]) -> PDFGCSource:
        def per_row(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.cat([t.expand(n, *t.shape[1:]) for t, n in zip(tensors, rows, strict=True)])

        motion = MotionRecord.cat(
            [s.motion.index(torch.zeros(n, dtype=torch.long)) for s, n in zip(sources, rows, strict=True)]
        )
        return PDFGCSource(per_row([s.id_feat for s in sources]), per_row([s.id_map for s in sources]), motion)


def _windows(wav: np.ndarray) -> np.ndarray:
    """The audio front end's windows of a whole track; speech too short for one window is padded with silence."""
    x = np.asarray(wav, dtype=np.float32)
    if x.shape[0] < MIN_SAMPLES:
        x = np.concatenate([x, np.zeros(MIN_SAMPLES - x.shape[0], np.float32)])
    return speech_windows(x)


def _frames(codes: torch.Tensor, times_s: np.ndarray) -> torch.Tensor:
    """Per output frame, the mouth code of the window centred nearest its time (smoothing is `smooth_clip`'s)."""
    return lips_at(codes, times_s, WINDOW_CENTRE_S)
