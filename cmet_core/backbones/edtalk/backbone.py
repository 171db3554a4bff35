"""EDTalk behind the backbone interface: encodes driving frames and renders against a prepared source,
in fixed-size chunks, under the runtime options (precision, memory format, compile).

Its motion record holds `exp` and the parts `lip`, `pose` and `wa` (the frame's appearance latent);
its source is a `SourceCache`. EDTalk applies no gain and no smoothing over time to its codes, and reads
the lips off the frames (a dub's come from the set's Audio2Lip).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from cmet_core.backbones.base import MotionRecord
from cmet_core.backbones.edtalk.entry import LIP_PART, edtalk_widths
from cmet_core.backbones.edtalk.network import Generator, Motion, SourceCache
from cmet_core.backbones.spec import Framing
from cmet_core.networks.runtime import RuntimeOptions, SpeechLips, inference, to_channels_last


def record(m: Motion) -> MotionRecord:
    """The backbone's record of the network's motion."""
    return MotionRecord(m.exp, {LIP_PART: m.lip, "pose": m.pose, "wa": m.wa})


class EDTalkBackbone:
    """EDTalk's `Backbone`: the tracked face crop at the generator's size, rendered whole."""

    name = "edtalk"
    speech_lips: SpeechLips | None = None

    def __init__(self, gen: Generator, options: RuntimeOptions = RuntimeOptions()) -> None:
        self.options = options
        self.device = options.select()
        self.gen = gen.eval().to(self.device)
        if options.channels_last:
            to_channels_last(self.gen)
        self.framing = Framing(size=gen.cfg.size)
        self.widths = edtalk_widths(gen.cfg.to_dict())
        self.batch = options.batch_for(self.device)
        self.q = self.gen.direction_basis()
        self._encode: Callable[[torch.Tensor], Motion] = self.gen.encode_motion
        self._decode: Callable[..., torch.Tensor] = self.gen.dec
        if options.compile != "off":
            self._encode = torch.compile(self.gen.encode_motion, mode=options.compile, dynamic=False)
            self._decode = torch.compile(self.gen.dec, mode=options.compile, dynamic=False)

    def _context(self) -> contextlib.AbstractContextManager[None]:
        return inference(self.device, self.options.precision)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def _chunks(self, n: int) -> Iterator[tuple[int, int]]:
        for start in range(0, n, self.batch):
            yield start, min(start + self.batch, n)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Static shapes for compiled graphs: pad a short last chunk by repeating its last row."""
        if self.options.compile == "off" or x.shape[0] == self.batch:
            return x
        return torch.cat([x, x[-1:].expand(self.batch - x.shape[0], *x.shape[1:])])

    def prepare_source(self, crops: torch.Tensor) -> SourceCache:
        with self._context():
            return self.gen.prepare_source(self._input(crops))

    def source_motion(self, source: SourceCache) -> MotionRecord:
        with self._context():
            return record(self.gen.motion(source.wa)).map(torch.Tensor.float)

    def encode(self, crops: torch.Tensor) -> MotionRecord:
        parts: list[MotionRecord] = []
        with self._context():
            for a, b in self._chunks(crops.shape[0]):
                m = record(self._encode(self._pad(self._input(crops[a:b]))))
                parts.append(m.index(slice(0, b - a)).map(torch.Tensor.float))
        return MotionRecord.cat(parts)

    def render(self, source: SourceCache, motion: MotionRecord) -> torch.Tensor:
        """Images (N,3,H,W) float32 on the CPU, about [-1,1].

        `source` is one identity for every row, or one per row (batch N): a batcher mixes jobs.
        """
        per_row = source.wa.shape[0] > 1
        out: list[torch.Tensor] = []
        with self._context():
            for a, b in self._chunks(len(motion)):
                lip, pose, exp = (
                    self._pad(t[a:b].to(self.device))
                    for t in (motion.parts[LIP_PART], motion.parts["pose"], motion.exp)
                )
                src = _source_rows(source, a, b, self._pad) if per_row else source
                latent, e = self.gen.latents(src.wa, lip, pose, exp, q=self.q)
                img = self._decode(latent, src.feats, e, normed=src.normed)
                out.append(img[: b - a].float().cpu())
        return torch.cat(out)

    def smooth_clip(self, motion: MotionRecord) -> MotionRecord:
        return motion

    def switch_off(self, motion: MotionRecord, off: frozenset[str]) -> MotionRecord:
        if off:
            raise ValueError(f"EDTalk has no separate eye codes to switch off: {', '.join(sorted(off))}")
        return motion

    def take_eyes(self, motion: MotionRecord, driving: MotionRecord, parts: frozenset[str]) -> MotionRecord:  # noqa: ARG002 (nothing to take)
        if parts:
            raise ValueError(f"EDTalk has no separate eye codes to take from a clip: {', '.join(sorted(parts))}")
        return motion

    def stack_sources(self, sources: Sequence[SourceCache], rows: Sequence[int]) -> SourceCache:
        def per_row(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
            return torch.cat([t.expand(n, *t.shape[1:]) for t, n in zip(tensors, rows, strict=True)])

        return SourceCache(
            wa=per_row([s.wa for s in sources]),
            feats=[per_row(level) for level in zip(*(s.feats for s in sources), strict=True)],
            normed=[per_row(level) for level in zip(*(s.normed for s in sources), strict=True)],
        )


def _source_rows(source: SourceCache, a: int, b: int, pad: Callable[[torch.Tensor], torch.Tensor]) -> SourceCache:
    return SourceCache(
        wa=pad(source.wa[a:b]), feats=[pad(f[a:b]) for f in source.feats], normed=[pad(n[a:b]) for n in source.normed]
    )
