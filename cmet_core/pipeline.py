"""edit(): one talking-face video in, the same video with another facial emotion out.

The clip is decoded three times instead of being held in memory, so peak memory does not grow
with its length (decoding runs at several hundred frames per second, far faster than the
networks): once to find and track the face, once to encode every frame's motion, once to render
and paste back. Between passes only small per-frame records are kept (a crop box, the motion
coefficients, a timestamp).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from cmet_core import faces
from cmet_core.backbones.base import Backbone, MotionRecord, Source
from cmet_core.emotions import EmotionLibrary, load_builtin_library
from cmet_core.enhance.restore import Restorer, RestorerRunner
from cmet_core.enhance.stage import Enhancer, wanted
from cmet_core.errors import ErrorCode, InputError
from cmet_core.expression import expression_track
from cmet_core.images import to_images as _to_images
from cmet_core.images import to_tensor as _to_tensor
from cmet_core.lips import check_inputs
from cmet_core.media.photo import is_photo
from cmet_core.media.video import DecodedFrame, VideoInfo, VideoWriter, read_frames
from cmet_core.media.window import clip_window
from cmet_core.models.connector import Connector
from cmet_core.models.errors import ModelLoadError
from cmet_core.models.registry import ConnectorChoice, choose, open_registry
from cmet_core.models.runtime import LipForward, LipRunner, RuntimeOptions
from cmet_core.models.sets import ModelSet, load_set, select_set
from cmet_core.options import EditChoices, Limits, face_plan, probe_input
from cmet_core.settings import CoreSettings
from cmet_core.speech_plan import EditTarget, SpeechPlan, plan_speech
from cmet_core.stages import Progress, Stage
from cmet_core.targets import Embed, EmotionTarget, semantic_vector
from cmet_core.timeline import ClipTimeline
from cmet_core.voice import FROM_AUDIO, FollowVoice, VoiceSegment

if TYPE_CHECKING:
    from cmet_core.models.speech import SpeechEncoder

log = logging.getLogger(__name__)

STAGES = (Stage.FACES, Stage.ENCODE, Stage.EXPRESSION, Stage.ENHANCE, Stage.RENDER)
"""The stages an edit runs, in order (a dub adds `mel` and `lips`)."""


def _no_progress(_stage: Stage, _done: int, _total: int) -> None:
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
    stage_seconds: dict[Stage, float] = field(default_factory=dict)
    network_seconds: float = 0.0
    connector: str = ""
    timeline: ClipTimeline | None = None
    voice: list[VoiceSegment] = field(default_factory=list)
    """For `from_audio`: the segments found in the voice (`timeline` is what they applied)."""

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


class Batching(Protocol):
    """How a server shares forwards across the edits it runs at once (the worker's dynamic batcher)."""

    def backbone(self, backbone: Backbone) -> Backbone: ...

    def embed(self, embed: Embed) -> Embed: ...

    def restorer(self, runner: RestorerRunner) -> Restorer: ...
    def lips(self, forward: LipForward) -> LipForward: ...


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

    `backbone` and `embed` default to the set's backbone and the lazy emotion2vec+ encoder; a
    server passes its batching wrappers instead (see `from_settings`).
    """

    def __init__(
        self,
        models: ModelSet,
        runtime: RuntimeOptions = RuntimeOptions(),
        library: EmotionLibrary | None = None,
        *,
        backbone: Backbone | None = None,
        embed: Embed | None = None,
        restorer: Restorer | None = None,
        lips: LipForward | None = None,
    ) -> None:
        self.models = models
        self.backbone: Backbone = backbone if backbone is not None else models.build_backbone(runtime)
        models.check_fit(self.backbone.name, self.backbone.widths)
        if self.backbone.framing.window is not None:
            raise ModelLoadError(
                f"the {self.backbone.name} backbone renders a window of its crop; paste-back of windowed "
                "renders is not supported yet"
            )
        if restorer is None and models.restorer is not None:
            restorer = RestorerRunner(models.restorer, runtime)
        self.restorer: Restorer | None = restorer
        if lips is None and models.audio2lip is not None:
            lips = LipRunner(models.audio2lip, self.backbone.device)
        self.lips = lips
        """Audio2Lip for dubbing; None when the set has none (dubbing is then refused)."""
        self.connector = models.connector.eval().to(self.backbone.device)
        self.library = library if library is not None else load_builtin_library()
        self.face_size = self.backbone.framing.size
        self.embed_speech: Embed = (
            embed if embed is not None else LazySpeechEncoder(models.emotion2vec_dir, self.backbone.device)
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
        plain = model_set.build_backbone(runtime)
        backbone = plain if batching is None else batching.backbone(plain)
        embed: Embed = LazySpeechEncoder(model_set.emotion2vec_dir, plain.device)
        restorer: Restorer | None = None
        if model_set.restorer is not None:
            plain_restorer = RestorerRunner(model_set.restorer, runtime)
            restorer = plain_restorer if batching is None else batching.restorer(plain_restorer)
        lips: LipForward | None = LipRunner(model_set.audio2lip, plain.device) if model_set.audio2lip else None
        if batching is not None:
            embed = batching.embed(embed)
            lips = batching.lips(lips) if lips is not None else None
        lib = EmotionLibrary.load(library) if library is not None else None
        return cls(model_set, runtime, lib, backbone=backbone, embed=embed, restorer=restorer, lips=lips)

    @property
    def connector_label(self) -> str:
        return self.models.connector_label

    def use_connector(self, choice: ConnectorChoice) -> None:
        """Switch to another registry connector (a worker following `latest`); running edits keep theirs."""
        self.models.use_connector(choice)
        self.connector = self.models.connector.eval().to(self.backbone.device)

    def vector(self, target: EmotionTarget, library: EmotionLibrary | None = None) -> np.ndarray:
        """`library` overrides the editor's own (e.g. the built-in one plus a user's emotions)."""
        return semantic_vector(target, library or self.library, self.embed_speech)

    def plan(
        self,
        target: EditTarget,
        library: EmotionLibrary | None,
        audio: Path,
        duration_s: float,
        limits: Limits,
        *,
        has_audio: bool = True,
    ) -> SpeechPlan:
        """What the connector reads for `target`: one vector, or a timeline (given, or found in the voice
        of `audio`) over an output of `duration_s`."""
        return plan_speech(
            target,
            library or self.library,
            self.embed_speech,
            audio,
            duration_s,
            limits.max_timeline_segments,
            has_audio=has_audio,
        )

    def edit(
        self,
        src: Path | str,
        dst: Path | str,
        target: EditTarget,
        options: EditChoices = EditChoices(),
        progress: Progress | None = None,
        library: EmotionLibrary | None = None,
        *,
        speech_track: Path | str | None = None,
        pose_video: Path | str | None = None,
        limits: Limits = Limits(),
    ) -> EditResult:
        """`speech_track` with `options.lips == "speech"` dubs (`cmet_core.dubbing`); a photo input is
        animated that way, its head moved by `pose_video` or held still. With `options.preview_s`,
        only that window of `src` is edited (a clip preview). `limits` are the operator's, beside the
        user's `options`."""
        src, dst, report = Path(src), Path(dst), progress or _no_progress
        if options.lips == "video" and speech_track is not None and pose_video is None:
            return self._follow_track(src, dst, target, options, limits, report, library, Path(speech_track))
        if options.lips == "speech" or speech_track is not None or pose_video is not None or is_photo(src):
            if options.preview_s is not None:
                raise InputError(
                    ErrorCode.BAD_PREVIEW_WINDOW, "clip previews of dubs are not offered: dub a shorter speech track"
                )
            from cmet_core.dubbing import Dub

            track, pose = (Path(p) if p is not None else None for p in (speech_track, pose_video))
            return Dub(self, src, dst, target, options, limits, report, library, track, pose).run()
        with clip_window(src, options, limits, dst.parent) as windowed:
            if isinstance(target, ClipTimeline) and windowed.duration_s is not None:
                target = target.windowed(windowed.start_s, windowed.duration_s)
            done = _Edit(self, windowed.src, dst, target, windowed.options, limits, report, library).run()
        return replace(done, source_frame=done.source_frame + windowed.first)

    def _follow_track(
        self,
        src: Path,
        dst: Path,
        target: EditTarget,
        options: EditChoices,
        limits: Limits,
        progress: Progress,
        library: EmotionLibrary | None,
        track: Path,
    ) -> EditResult:
        """The video's own lips, its face following the voice of `track` (aligned to it, e.g. a dub that
        replaces its audio), which becomes the output's audio."""
        voice = target if isinstance(target, FollowVoice) else None
        if isinstance(target, EmotionTarget) and target.emotion == FROM_AUDIO:
            voice = FollowVoice(intensity=target.intensity)
        check_inputs(options.lips, photo=False, speech_track=True, pose_video=False, follows_voice=voice is not None)
        assert voice is not None
        if options.preview_s is not None:
            raise InputError(ErrorCode.BAD_PREVIEW_WINDOW, "clip previews with a separate speech track are not offered")
        edit = _Edit(self, src, dst, voice.model_copy(update={"audio": track}), options, limits, progress, library)
        edit.audio = track
        return edit.run()

    def expression_weights(
        self,
        src: Path | str,
        options: EditChoices = EditChoices(),
        progress: Progress | None = None,
        limits: Limits = Limits(),
    ) -> np.ndarray:
        """Every frame's expression code (frames x the backbone's expression width), found and cropped as an edit
        would: the visual side of training data (what the official `compute_alpha_D` gives)."""
        return _Edit(self, Path(src), Path(src), None, options, limits, progress or _no_progress, None).expression()


class _Edit:
    """One edit's state across its passes; `run` reads top to bottom as the stages happen."""

    def __init__(
        self,
        editor: Editor,
        src: Path,
        dst: Path,
        target: EditTarget | None,
        options: EditChoices,
        limits: Limits,
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
        self.library, self.limits = library, limits
        self.backbone = editor.backbone
        self.seconds: dict[Stage, float] = {}
        self.network = 0.0
        self.audio: Path | None = None
        """The output's audio instead of the input's own (a speech track the face follows); None: the input's."""
        self.frame_limit: int | None = None
        """Frames of the input the passes read (a dub shorter than its video needs no more); None: all."""

    @contextmanager
    def _stage(self, name: Stage) -> Iterator[None]:
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
        info = probe_input(self.src, self.options, self.limits)
        boxes, source_index = self._faces(info, faces.is_face_crop(info.width, info.height))
        motion, _, _ = self._encode(boxes, source_index)
        return motion.exp.numpy()

    def run(self) -> EditResult:
        assert self.target is not None
        connector, connector_label = self.editor.connector, self.editor.connector_label  # one connector per edit
        info = probe_input(self.src, self.options, self.limits)
        with self._stage(Stage.EXPRESSION), self._network():
            plan = self.editor.plan(
                self.target, self.library, self.src, info.duration_s, self.limits, has_audio=info.has_audio
            )
        crop_input = faces.is_face_crop(info.width, info.height)
        boxes, source_index, motion, times, source = self._motion(info, crop_input)
        exp = self._edited_expression(connector, plan, motion.exp, times)
        enhancer = self._enhancer(boxes)
        like = info if enhancer is None else enhancer.output_info(info)
        with self._stage(Stage.RENDER), _atomic_output(self.dst) as partial:
            self._render(like, boxes, crop_input, source, motion, exp, partial, enhancer)
        self._count_restorer(enhancer)
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
            width=like.width,
            height=like.height,
            source_frame=source_index,
            face_crop_input=crop_input,
            stage_seconds=self.seconds,
            network_seconds=self.network,
            connector=connector_label,
            timeline=plan.timeline,
            voice=plan.voice,
        )

    def _read(self) -> Iterator[DecodedFrame]:
        frames = read_frames(self.src)
        return frames if self.frame_limit is None else itertools.islice(frames, self.frame_limit)

    def _motion(
        self, info: VideoInfo, crop_input: bool
    ) -> tuple[list[faces.CropBox], int, MotionRecord, np.ndarray, Source]:
        """Passes 1 and 2: crop boxes, the identity frame, every frame's motion and time, the prepared source."""
        with self._stage(Stage.FACES):
            boxes, source_index = self._faces(info, crop_input)
        with self._stage(Stage.ENCODE):
            motion, times, source = self._encode(boxes, source_index)
        return boxes, source_index, motion, times, source

    def _edited_expression(
        self, connector: Connector, plan: SpeechPlan, exp_in: torch.Tensor, times: np.ndarray
    ) -> torch.Tensor:
        """Every output frame's expression coefficients (`exp_in`, at `times`) moved towards the target's
        semantic vector (one for the clip, or the timeline's at each window's time)."""
        with self._stage(Stage.EXPRESSION), self._network():
            speech = plan.condition(self.backbone.device)
            with torch.inference_mode():
                exp = expression_track(connector, exp_in.to(self.backbone.device), times, speech).cpu()
            self.progress(Stage.EXPRESSION, len(times), len(times))
        return exp

    # -- pass 1: where the face is ---------------------------------------------------------
    def _faces(self, info: VideoInfo, crop_input: bool) -> tuple[list[faces.CropBox], int]:
        plan = face_plan(
            self.src,
            info,
            self.options,
            self.limits,
            crop_input,
            lambda done, total: self.progress(Stage.FACES, done, total),
            self.frame_limit,
        )
        return plan.boxes, plan.source_index

    # -- pass 2: every frame's motion ------------------------------------------------------
    def _crops(self, chunk: list[DecodedFrame], boxes: list[faces.CropBox]) -> list[np.ndarray]:
        return [faces.crop_face(f.image, boxes[f.index], self.editor.face_size) for f in chunk]

    def _encode(self, boxes: list[faces.CropBox], source_index: int) -> tuple[MotionRecord, np.ndarray, Source]:
        parts: list[MotionRecord] = []
        times: list[float] = []
        source_crop: np.ndarray | None = None
        for chunk in _chunks(self._read(), self.limits.chunk_frames):
            if chunk[-1].index >= len(boxes):
                raise InputError(ErrorCode.DECODE_FAILED, f"{self.src}: decoding gave more frames than the first pass")
            crops = self._crops(chunk, boxes)
            if chunk[0].index <= source_index <= chunk[-1].index:
                source_crop = crops[source_index - chunk[0].index]
            with self._network():
                parts.append(self.backbone.encode(_to_tensor(crops)))
            times += [f.time_s for f in chunk]
            self.progress(Stage.ENCODE, len(times), len(boxes))
        if source_crop is None or len(times) != len(boxes):
            raise InputError(
                ErrorCode.DECODE_FAILED, f"{self.src}: decoding gave {len(times)} frames, the first pass {len(boxes)}"
            )
        with self._network():
            source = self.backbone.prepare_source(_to_tensor([source_crop]))
        motion = MotionRecord.cat(parts)
        return motion, np.asarray(times), source

    # -- between: the restorer's landmarks, when it works on this edit ---------------------
    def _enhancer(self, boxes: list[faces.CropBox], images: Iterable[np.ndarray] | None = None) -> Enhancer | None:
        """The restorer's stage when it works on this edit, its landmark pass done over `images` (default:
        the input's frames)."""
        restorer = self.editor.restorer
        if not wanted(self.options, restorer, boxes[0].side, self.editor.face_size):
            return None
        assert restorer is not None
        enhancer = Enhancer(restorer, self.options)
        with self._stage(Stage.ENHANCE):
            enhancer.prepare((f.image for f in self._read()) if images is None else images, boxes, self.progress)
        if enhancer.missing:
            log.info("no landmarks in %d of %d frames: bridged or crop-box aligned", enhancer.missing, len(boxes))
        return enhancer

    def _count_restorer(self, enhancer: Enhancer | None) -> None:
        """The restorer's forwards ran inside the render loop: count them as its own stage."""
        if enhancer is not None:
            self.seconds[Stage.RENDER] -= enhancer.restore_seconds
            self.seconds[Stage.ENHANCE] += enhancer.restore_seconds

    # -- pass 3: render, paste back, (restore), write --------------------------------------
    def _render(
        self,
        like: VideoInfo,
        boxes: list[faces.CropBox],
        crop_input: bool,
        source: Source,
        motion: MotionRecord,
        exp: torch.Tensor,
        out: Path,
        enhancer: Enhancer | None = None,
    ) -> None:
        size = self.editor.face_size
        mask = faces.paste_mask(size, crop_input)
        done = 0
        with VideoWriter(
            out,
            like=like if self.audio is None else replace(like, has_audio=True),
            audio_from=self.audio or (self.src if like.has_audio else None),
            crf=self.limits.crf,
        ) as writer:
            for chunk in _chunks(read_frames(self.src), self.limits.chunk_frames):
                a, b = chunk[0].index, chunk[-1].index + 1
                with self._network():
                    rendered = _to_images(self.backbone.render(source, motion.index(slice(a, b)).with_exp(exp[a:b])))
                images = [
                    faces.paste_back(f.image, face, boxes[f.index], mask=mask)
                    for f, face in zip(chunk, rendered, strict=True)
                ]
                if enhancer is not None:
                    with self._network():
                        images = enhancer.apply(images, [f.index for f in chunk])
                for frame, image in zip(chunk, images, strict=True):
                    writer.write(image, frame.pts)
                done += len(chunk)
                self.progress(Stage.RENDER, done, len(boxes))
