"""Dynamic batching across the jobs a worker runs at once (like Triton's dynamic batcher).

Jobs run in threads of one worker process and share its models. Their calls to the backbone's encoder
and renderer, to Audio2Lip, to emotion2vec+ and to the face restorer go through one queue per
model: a serving thread takes the first waiting request, gathers more until `max_batch` rows or
`max_wait_ms` have passed, runs them as one forward and hands each job its rows. `BatchingBackbone`
has the backbone's interface, so the pipeline does not know it is batched. Rows rendered against
different identity sources share a batch: the backbone stacks their sources row by row.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmet_core.backbones.base import Backbone, MotionRecord, Source
from cmet_core.enhance.restore import RestorerRunner
from cmet_core.networks.runtime import LipForward
from cmet_jobs.settings import BatchedModel


@dataclass(frozen=True)
class BatchPolicy:
    max_batch: int = 8
    max_wait_ms: float = 5.0


@dataclass
class _Request:
    rows: int
    payload: Any
    future: Future[Any] = field(default_factory=Future)


class _Model:
    """One model's queue and serving thread; `run(payloads)` does the batched forward and returns per-request
    results."""

    def __init__(
        self, name: str, policy: BatchPolicy, run: Callable[[list[Any]], list[Any]], observe: Callable[[str, int], None]
    ) -> None:
        self.name, self.policy, self.run, self.observe = name, policy, run, observe
        self.requests: queue.Queue[_Request] = queue.Queue()
        threading.Thread(target=self._serve, name=f"batcher-{name}", daemon=True).start()

    def submit(self, rows: int, payload: Any) -> Any:
        request = _Request(rows, payload)
        self.requests.put(request)
        return request.future.result()

    def _gather(self) -> list[_Request]:
        batch = [self.requests.get()]
        rows = batch[0].rows
        deadline = time.monotonic() + self.policy.max_wait_ms / 1000
        while rows < self.policy.max_batch:
            try:
                nxt = self.requests.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            batch.append(nxt)
            rows += nxt.rows
        return batch

    def _serve(self) -> None:
        while True:
            batch = self._gather()
            self.observe(self.name, sum(r.rows for r in batch))
            try:
                results = self.run([r.payload for r in batch])
            except BaseException as exc:  # every waiting job learns of the failure
                for r in batch:
                    r.future.set_exception(exc)
                continue
            for r, result in zip(batch, results, strict=True):
                r.future.set_result(result)


def _split(t: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    return list(torch.split(t, sizes))


class BatchingBackbone:
    """A `Backbone` whose encode and render calls are batched with other threads' calls.

    It never looks inside a motion record or a source: records are joined and split by `MotionRecord`,
    sources of different identities are joined by the backbone's own `stack_sources`."""

    def __init__(
        self,
        backbone: Backbone,
        policy: BatchPolicy = BatchPolicy(),
        observe: Callable[[str, int], None] = lambda _model, _rows: None,
        renderer_policy: BatchPolicy | None = None,
    ) -> None:
        """`policy` batches the encoder, and the renderer too unless `renderer_policy` is given."""
        self.backbone = backbone
        self.name, self.framing, self.widths = backbone.name, backbone.framing, backbone.widths
        self.device, self.speech_lips = backbone.device, backbone.speech_lips
        self._encoder = _Model(f"{backbone.name}_encoder", policy, self._encode_many, observe)
        self._renderer = _Model(f"{backbone.name}_renderer", renderer_policy or policy, self._render_many, observe)

    def prepare_source(self, crops: torch.Tensor) -> Source:
        return self.backbone.prepare_source(crops)

    def source_motion(self, source: Source) -> MotionRecord:
        return self.backbone.source_motion(source)

    def stack_sources(self, sources: Sequence[Source], rows: Sequence[int]) -> Source:
        return self.backbone.stack_sources(sources, rows)

    def smooth_clip(self, motion: MotionRecord) -> MotionRecord:
        return self.backbone.smooth_clip(motion)

    def switch_off(self, motion: MotionRecord, off: frozenset[str]) -> MotionRecord:
        return self.backbone.switch_off(motion, off)

    def take_eyes(self, motion: MotionRecord, driving: MotionRecord, parts: frozenset[str]) -> MotionRecord:
        return self.backbone.take_eyes(motion, driving, parts)

    def encode(self, crops: torch.Tensor) -> MotionRecord:
        motion: MotionRecord = self._encoder.submit(crops.shape[0], crops)
        return motion

    def render(self, source: Source, motion: MotionRecord) -> torch.Tensor:
        images: torch.Tensor = self._renderer.submit(len(motion), (source, motion))
        return images

    def _encode_many(self, payloads: list[torch.Tensor]) -> list[MotionRecord]:
        return self.backbone.encode(torch.cat(payloads)).split([p.shape[0] for p in payloads])

    def _render_many(self, payloads: list[tuple[Source, MotionRecord]]) -> list[torch.Tensor]:
        if len(payloads) == 1:
            return [self.backbone.render(*payloads[0])]
        sizes = [len(motion) for _, motion in payloads]
        source = self.backbone.stack_sources([src for src, _ in payloads], sizes)
        images = self.backbone.render(source, MotionRecord.cat([motion for _, motion in payloads]))
        return _split(images, sizes)


class SpeechBatcher:
    """emotion2vec+ over the speech clips of concurrent jobs in shared forwards; call it like
    `Editor.embed_speech` (clips in, one embedding row per clip out)."""

    def __init__(
        self,
        embed: Callable[[Sequence[Path]], np.ndarray],
        policy: BatchPolicy,
        observe: Callable[[str, int], None] = lambda _model, _rows: None,
    ) -> None:
        self._embed = embed
        self._model = _Model("emotion2vec", policy, self._embed_many, observe)

    def __call__(self, clips: Sequence[Path]) -> np.ndarray:
        rows: np.ndarray = self._model.submit(len(clips), list(clips))
        return rows

    def _embed_many(self, payloads: list[list[Path]]) -> list[np.ndarray]:
        rows = self._embed([clip for clips in payloads for clip in clips])
        bounds = np.cumsum([0] + [len(c) for c in payloads])
        return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class BatchingRestorer:
    """A `RestorerRunner` whose aligned faces share forwards with other threads' faces (GFPGAN, 512 px)."""

    def __init__(
        self,
        runner: RestorerRunner,
        policy: BatchPolicy,
        observe: Callable[[str, int], None] = lambda _model, _rows: None,
    ) -> None:
        self.runner = runner
        self.device, self.size = runner.device, runner.size
        self._model = _Model("gfpgan", policy, self._restore_many, observe)

    def restore(self, faces: torch.Tensor) -> torch.Tensor:
        restored: torch.Tensor = self._model.submit(faces.shape[0], faces)
        return restored

    def _restore_many(self, payloads: list[torch.Tensor]) -> list[torch.Tensor]:
        return _split(self.runner.restore(torch.cat(payloads)), [p.shape[0] for p in payloads])


class LipBatcher:
    """Audio2Lip over the mel windows of concurrent dubs in shared forwards; call it like `Editor.lips`.

    Every window is independent (eval-mode BatchNorm), so mixing jobs changes nothing but rounding."""

    def __init__(
        self, forward: LipForward, policy: BatchPolicy, observe: Callable[[str, int], None] = lambda _m, _r: None
    ) -> None:
        self._forward = forward
        self._model = _Model("audio2lip", policy, self._forward_many, observe)

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        lips: torch.Tensor = self._model.submit(windows.shape[0], windows)
        return lips

    def _forward_many(self, payloads: list[torch.Tensor]) -> list[torch.Tensor]:
        return _split(self._forward(torch.cat(payloads)), [p.shape[0] for p in payloads])


class WorkerBatching:
    """The worker's `Batching` for `Editor.from_settings`: each model's policy from the settings,
    every batch's size observed (the Prometheus histogram)."""

    def __init__(self, policy: Callable[[BatchedModel], BatchPolicy], observe: Callable[[str, int], None]) -> None:
        self._policy, self._observe = policy, observe

    def backbone(self, backbone: Backbone) -> BatchingBackbone:
        """The backbone's encoder and renderer batched (the `edtalk_*` policies serve whichever backbone)."""
        return BatchingBackbone(
            backbone, self._policy("edtalk_encoder"), self._observe, self._policy("edtalk_renderer")
        )

    def embed(self, embed: Callable[[Sequence[Path]], np.ndarray]) -> SpeechBatcher:
        return SpeechBatcher(embed, self._policy("emotion2vec"), self._observe)

    def restorer(self, runner: RestorerRunner) -> BatchingRestorer:
        return BatchingRestorer(runner, self._policy("gfpgan"), self._observe)

    def lips(self, forward: LipForward) -> LipBatcher:
        return LipBatcher(forward, self._policy("audio2lip"), self._observe)
