"""edit(): one talking-face video in, the same video with another facial emotion out.

The clip is decoded three times instead of being held in memory, so peak memory does not grow
with its length (decoding runs at several hundred frames per second, far faster than the
networks): once to find and track the face, once to encode every frame's motion, once to render
and paste back. Between passes only small per-frame records are kept (a crop box, 36 motion
coefficients, a timestamp).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from cmet_core import faces
from cmet_core.emotions import EmotionLibrary, load_builtin_library
from cmet_core.errors import ErrorCode, InputError
from cmet_core.expression import expression_track
from cmet_core.images import to_images as _to_images
from cmet_core.images import to_tensor as _to_tensor
from cmet_core.media.video import DecodedFrame, VideoInfo, VideoWriter, read_frames
from cmet_core.media.window import clip_window
from cmet_core.models.edtalk import Motion, SourceCache
from cmet_core.models.registry import ConnectorChoice, choose, open_registry
from cmet_core.models.runtime import EDTalkRunner, RuntimeOptions
from cmet_core.models.sets import ModelSet, load_set, select_set
from cmet_core.options import EditOptions
from cmet_core.settings import CoreSettings
from cmet_core.targets import Embed, EmotionTarget, semantic_vector

if TYPE_CHECKING:
    from cmet_core.models.speech import SpeechEncoder

log = logging.getLogger(__name__)

STAGES = ("faces", "encode", "expression", "render")

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called as each stage advances; `total` is the frame count."""


def _no_progress(_stage: str, _done: int, _total: int) -> None:
    return None


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
    stage_seconds: dict[str, float] = field(default_factory=dict)
    network_seconds: float = 0.0
    connector: str = ""

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())


def _chunks(frames: Iterator[DecodedFrame], size: int) -> Iterator[list[DecodedFrame]]:
    chunk: list[DecodedFrame] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def _atomic_output(dst: Path) -> Iterator[Path]:
    """Write beside `dst` and rename at the end: a failed edit never leaves a half-written video."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield partial
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)


class Runner(Protocol):
    """What the pipeline asks of EDTalk: `EDTalkRunner`, or a server's batching wrapper around one."""

    device: torch.device

    def prepare_source(self, source: torch.Tensor) -> SourceCache: ...

    def encode_motion(self, frames: torch.Tensor) -> Motion: ...

    def render(self, source: SourceCache, lip: torch.Tensor, pose: torch.Tensor, exp: torch.Tensor) -> torch.Tensor: ...


class Batching(Protocol):
    """How a server shares forwards across the edits it runs at once (the worker's dynamic batcher)."""

    def runner(self, runner: EDTalkRunner) -> Runner: ...

    def embed(self, embed: Embed) -> Embed: ...


class LazySpeechEncoder:
    """emotion2vec+ embeddings; the encoder (and funasr, slow to import) load on the first speech target only."""

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        self.model_dir, self.device = model_dir, device
        self._encoder: SpeechEncoder | None = None
        self._lock = threading.Lock()

    def __call__(self, clips: Sequence[Path]) -> np.ndarray:
        with self._lock:
            if self._encoder is None:
                from cmet_core.models.speech import SpeechEncoder

                self._encoder = SpeechEncoder(self.model_dir, device=self.device)
        return self._encoder.embed(list(clips))


class Editor:
    """The loaded models of one set, reused across edits (a worker keeps one per device).

    `runner` and `embed` default to the plain EDTalk runner and the lazy emotion2vec+ encoder; a
    server passes its batching wrappers instead (see `from_settings`).
    """

    def __init__(
        self,
        models: ModelSet,
        runtime: RuntimeOptions = RuntimeOptions(),
        library: EmotionLibrary | None = None,
        *,
        runner: Runner | None = None,
        embed: Embed | None = None,
    ) -> None:
        self.models = models
        self.runner: Runner = runner if runner is not None else EDTalkRunner(models.edtalk, runtime)
        self.connector = models.connector.eval().to(self.runner.device)
        self.library = library if library is not None else load_builtin_library()
        self.face_size = models.edtalk.cfg.size
        self.embed_speech: Embed = (
            embed if embed is not None else LazySpeechEncoder(models.emotion2vec_dir, self.runner.device)
        )

    @classmethod
    def load(
        cls,
        set_dir: Path | None = None,
        runtime: RuntimeOptions = RuntimeOptions(),
        library: Path | None = None,
        connector: ConnectorChoice | None = None,
    ) -> Editor:
        """`connector` serves a registry version instead of the set's own connector."""
        return cls(
            load_set(set_dir, connector=connector),
            runtime,
            EmotionLibrary.load(library) if library is not None else None,
        )

    @classmethod
    def from_settings(
        cls,
        settings: CoreSettings,
        *,
        models: Path | None = None,
        device: str | None = None,
        batch: int | None = None,
        library: Path | None = None,
        connector: str | None = None,
        registry: str | None = None,
        batching: Batching | None = None,
    ) -> Editor:
        """The editor the settings describe (runtime options, connector selection and registry), each
        overridable by the caller's own flag; the CLI, `prep` and the workers all build theirs here."""
        runtime = RuntimeOptions.from_settings(settings, device, batch)
        selection = connector if connector is not None else settings.connector_version
        choice = choose(selection, open_registry(registry, settings)) if selection is not None else None
        model_set = load_set(select_set(models), connector=choice)
        plain = EDTalkRunner(model_set.edtalk, runtime)
        runner: Runner = plain if batching is None else batching.runner(plain)
        embed: Embed = LazySpeechEncoder(model_set.emotion2vec_dir, plain.device)
        if batching is not None:
            embed = batching.embed(embed)
        lib = EmotionLibrary.load(library) if library is not None else None
        return cls(model_set, runtime, lib, runner=runner, embed=embed)

    @property
    def connector_label(self) -> str:
        return self.models.connector_label

    def use_connector(self, choice: ConnectorChoice) -> None:
        """Switch to another registry connector (a worker following `latest`); running edits keep theirs."""
        self.models.use_connector(choice)
        self.connector = self.models.connector.eval().to(self.runner.device)

    def vector(self, target: EmotionTarget, library: EmotionLibrary | None = None) -> np.ndarray:
        """`library` overrides the editor's own (e.g. the built-in one plus a user's emotions)."""
        return semantic_vector(target, library or self.library, self.embed_speech)

    def edit(
        self,
        src: Path | str,
        dst: Path | str,
        target: EmotionTarget,
        options: EditOptions = EditOptions(),
        progress: Progress | None = None,
        library: EmotionLibrary | None = None,
    ) -> EditResult:
        """With `options.preview_s`, only that window of `src` is edited (a clip preview)."""
        with clip_window(Path(src), options, Path(dst).parent) as windowed:
            edit = _Edit(self, windowed.src, Path(dst), target, windowed.options, progress or _no_progress, library)
            done = edit.run()
        return replace(done, source_frame=done.source_frame + windowed.first)

    def expression_weights(
        self, src: Path | str, options: EditOptions = EditOptions(), progress: Progress | None = None
    ) -> np.ndarray:
        """Every frame's EDTalk expression weights (frames x exp_dim), found and cropped as an edit
        would: the visual side of training data (what the official `compute_alpha_D` gives)."""
        return _Edit(self, Path(src), Path(src), None, options, progress or _no_progress, None).expression()


class _Edit:
    """One edit's state across its passes; `run` reads top to bottom as the stages happen."""

    def __init__(
        self,
        editor: Editor,
        src: Path,
        dst: Path,
        target: EmotionTarget | None,
        options: EditOptions,
        progress: Progress,
        library: EmotionLibrary | None,
    ) -> None:
        self.editor, self.src, self.dst, self.target, self.options, self.progress = (
            editor,
            src,
            dst,
            target,
            options,
            progress,
        )
        self.library = library
        self.runner = editor.runner
        self.seconds: dict[str, float] = {}
        self.network = 0.0

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        log.info("stage %s took %.2f s", name, seconds, extra={"stage": name, "seconds": round(seconds, 3)})

    @contextmanager
    def _network(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.network += time.perf_counter() - start

    def expression(self) -> np.ndarray:
        info = self.options.probe(self.src)
        boxes, source_index = self._faces(info, faces.is_face_crop(info.width, info.height))
        motion, _, _ = self._encode(boxes, source_index)
        return motion.exp.numpy()

    def run(self) -> EditResult:
        assert self.target is not None
        connector, connector_label = self.editor.connector, self.editor.connector_label  # one connector per edit
        info = self.options.probe(self.src)
        with self._stage("expression"), self._network():
            vector = self.editor.vector(self.target, self.library)
        crop_input = faces.is_face_crop(info.width, info.height)
        with self._stage("faces"):
            boxes, source_index = self._faces(info, crop_input)
        with self._stage("encode"):
            motion, times, source = self._encode(boxes, source_index)
        with self._stage("expression"), self._network():
            speech = torch.from_numpy(vector).to(self.runner.device).reshape(1, 1, -1)
            with torch.inference_mode():
                exp = expression_track(connector, motion.exp.to(self.runner.device), times, speech).cpu()
            self.progress("expression", len(boxes), len(boxes))
        with self._stage("render"), _atomic_output(self.dst) as partial:
            self._render(info, boxes, crop_input, source, motion, exp, partial)
        total = sum(self.seconds.values())
        facts = {"frames": len(boxes), "seconds": round(total, 3), "network_seconds": round(self.network, 3)}
        log.info(
            "edited %d frames in %.2f s (network %.2f s) with connector %s",
            len(boxes),
            total,
            self.network,
            connector_label,
            extra={**facts, "connector": connector_label},
        )
        return EditResult(
            output=self.dst,
            frames=len(boxes),
            fps=float(info.fps),
            duration_s=info.duration_s,
            width=info.width,
            height=info.height,
            source_frame=source_index,
            face_crop_input=crop_input,
            stage_seconds=self.seconds,
            network_seconds=self.network,
            connector=connector_label,
        )

    # -- pass 1: where the face is ---------------------------------------------------------
    def _faces(self, info: VideoInfo, crop_input: bool) -> tuple[list[faces.CropBox], int]:
        plan = self.options.face_plan(
            self.src, info, crop_input, lambda done, total: self.progress("faces", done, total)
        )
        return plan.boxes, plan.source_index

    # -- pass 2: every frame's motion ------------------------------------------------------
    def _crops(self, chunk: list[DecodedFrame], boxes: list[faces.CropBox]) -> list[np.ndarray]:
        return [faces.crop_face(f.image, boxes[f.index], self.editor.face_size) for f in chunk]

    def _encode(self, boxes: list[faces.CropBox], source_index: int) -> tuple[Motion, np.ndarray, SourceCache]:
        parts: list[Motion] = []
        times: list[float] = []
        source_crop: np.ndarray | None = None
        for chunk in _chunks(read_frames(self.src), self.options.chunk_frames):
            if chunk[-1].index >= len(boxes):
                raise InputError(ErrorCode.DECODE_FAILED, f"{self.src}: decoding gave more frames than the first pass")
            crops = self._crops(chunk, boxes)
            if chunk[0].index <= source_index <= chunk[-1].index:
                source_crop = crops[source_index - chunk[0].index]
            with self._network():
                parts.append(self.runner.encode_motion(_to_tensor(crops)))
            times += [f.time_s for f in chunk]
            self.progress("encode", len(times), len(boxes))
        if source_crop is None or len(times) != len(boxes):
            raise InputError(
                ErrorCode.DECODE_FAILED, f"{self.src}: decoding gave {len(times)} frames, the first pass {len(boxes)}"
            )
        with self._network():
            source = self.runner.prepare_source(_to_tensor([source_crop]))
        motion = Motion(*(torch.cat([getattr(p, f) for p in parts]) for f in ("lip", "pose", "exp", "wa")))
        return motion, np.asarray(times), source

    # -- pass 3: render, paste back, write -------------------------------------------------
    def _render(
        self,
        info: VideoInfo,
        boxes: list[faces.CropBox],
        crop_input: bool,
        source: SourceCache,
        motion: Motion,
        exp: torch.Tensor,
        out: Path,
    ) -> None:
        size = self.editor.face_size
        mask = faces.paste_mask(size, crop_input)
        done = 0
        with VideoWriter(
            out, like=info, audio_from=self.src if info.has_audio else None, crf=self.options.crf
        ) as writer:
            for chunk in _chunks(read_frames(self.src), self.options.chunk_frames):
                a, b = chunk[0].index, chunk[-1].index + 1
                with self._network():
                    rendered = _to_images(self.runner.render(source, motion.lip[a:b], motion.pose[a:b], exp[a:b]))
                for frame, face in zip(chunk, rendered, strict=True):
                    writer.write(faces.paste_back(frame.image, face, boxes[frame.index], mask=mask), frame.pts)
                done += len(chunk)
                self.progress("render", done, len(boxes))
