"""edit(): one talking-face video in, the same video with another facial emotion out.

`Editor` holds a set's loaded models and dispatches an edit: the video's own lips (`_Edit`, below),
a dub (`dubbing.Dub`) or the video's face following another speech track. An edit runs the shared
passes (`passes.py`: faces, motion, the edited expression), then the frame loop (`frame_loop.py`):
render, paste back, the per-frame stages (`frame_stages.py`, e.g. `enhance`), write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from cmet_core import faces
from cmet_core.backbones.base import Backbone
from cmet_core.edit.dubbing import Dub
from cmet_core.edit.editing import Clock, EditResult, Progress, check_eyes, connector_of, no_progress
from cmet_core.edit.eyes import eye_clip
from cmet_core.edit.frame_loop import Drive, Frame, FrameLoop, video_out
from cmet_core.edit.frame_stages import DEFAULT_STAGES, StageFactory
from cmet_core.edit.lips import check_inputs
from cmet_core.edit.passes import (
    audio_lips,
    edited_expression,
    encode_pass,
    face_pass,
    motion_passes,
    read_input,
    read_input_planes,
)
from cmet_core.edit.reference import reference_expression
from cmet_core.edit.several import SeveralFaces
from cmet_core.edit.window import clip_window
from cmet_core.emotion.library import EmotionLibrary, load_builtin_library
from cmet_core.emotion.speech_plan import EditTarget, SpeechPlan, needs_connector, plan_speech
from cmet_core.emotion.targets import Embed, EmotionTarget, semantic_vector
from cmet_core.emotion.timeline import ClipTimeline
from cmet_core.emotion.voice import FROM_AUDIO, FollowVoice
from cmet_core.enhance.restore import Restorer, RestorerRunner
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.photo import is_photo
from cmet_core.media.video import DecodedFrame, PlanesFrame
from cmet_core.meter import metered
from cmet_core.modelsets.registry import ConnectorChoice, choose, open_registry
from cmet_core.modelsets.sets import ModelSet, load_set, read_set, select_set
from cmet_core.networks.runtime import LipForward, LipRunner, RuntimeOptions, SpeechLips, audio2lip_lips
from cmet_core.networks.speech import SpeechEncoder
from cmet_core.options import EditChoices, Limits, probe_input
from cmet_core.quality.assess import QualityConfig, assess, spans_of
from cmet_core.quality.models import QualityUnavailable
from cmet_core.quality.report import QualityProblem
from cmet_core.settings import CoreSettings
from cmet_core.stages import Stage
from cmet_core.threads import apply_thread_policy

if TYPE_CHECKING:
    from cmet_core.networks.speech import SpeechEncoder

__all__ = ["STAGES", "Batching", "EditResult", "Editor", "LazySpeechEncoder"]

log = logging.getLogger(__name__)

STAGES = (Stage.FACES, Stage.ENCODE, Stage.EXPRESSION, Stage.ENHANCE, Stage.RENDER, Stage.QUALITY)
"""The stages an edit runs, in order (a dub adds `mel` and `lips`)."""


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
        quality: QualityConfig = QualityConfig(),
    ) -> None:
        self.models = models
        self.quality = quality
        """How the quality report of an edit with `quality` on samples and judges."""
        self.backbone: Backbone = backbone if backbone is not None else models.build_backbone(runtime)
        models.check_fit(self.backbone.name, self.backbone.widths)
        if restorer is None and models.restorer is not None:
            restorer = RestorerRunner(models.restorer, runtime)
        self.restorer: Restorer | None = restorer
        if lips is None and models.audio2lip is not None:
            lips = LipRunner(models.audio2lip, self.backbone.device)
        own = self.backbone.speech_lips
        self.lips: SpeechLips | None = own if own is not None else audio2lip_lips(lips) if lips is not None else None
        """Lips from speech for dubbing: the backbone's own, or the set's Audio2Lip (`lips`, or a server's
        batcher of it); None when there is neither (dubbing is then refused)."""
        self.connector = models.connector.eval().to(self.backbone.device) if models.connector is not None else None
        self.library = library if library is not None else load_builtin_library()
        self.face_size = self.backbone.framing.size
        self.stages: Sequence[StageFactory] = DEFAULT_STAGES
        """The per-frame stages this editor offers (each decides per edit whether it applies), in order."""
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
        overridable by the caller's own flag; the CLI, `prep` and the workers all build theirs here, so
        this is where the process's thread policy (`cmet_core/threads.py`) is applied."""
        apply_thread_policy(settings)
        runtime = RuntimeOptions.from_settings(settings, device, batch)
        selection = connector if connector is not None else settings.connector_version
        set_dir = select_set(models)
        kind = read_set(set_dir).backbone  # each backbone has its own registry versions
        choice = choose(selection, open_registry(registry, settings, kind)) if selection is not None else None
        model_set = load_set(set_dir, connector=choice)
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
        quality = QualityConfig(settings.quality_fps, settings.quality_identity_fps, settings.quality_emotion_model)
        return cls(
            model_set, runtime, lib, backbone=backbone, embed=embed, restorer=restorer, lips=lips, quality=quality
        )

    @property
    def connector_label(self) -> str:
        return self.models.connector_label

    def use_connector(self, choice: ConnectorChoice) -> None:
        """Switch to another registry connector (a worker following `latest`); running edits keep theirs."""
        self.models.use_connector(choice)
        self.connector = connector_of(self).eval().to(self.backbone.device)

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
        of `audio`) over an output of `duration_s`; and the codes of its expression references."""
        return plan_speech(
            target,
            library or self.library,
            self.embed_speech,
            audio,
            duration_s,
            limits.max_timeline_segments,
            has_audio=has_audio,
            express=lambda reference: reference_expression(self.backbone, reference, limits),
        )

    def edit(
        self,
        src: Path | str,
        dst: Path | str,
        target: EditTarget | None,
        options: EditChoices = EditChoices(),
        progress: Progress | None = None,
        library: EmotionLibrary | None = None,
        *,
        speech_track: Path | str | None = None,
        pose_video: Path | str | None = None,
        eye_video: Path | str | None = None,
        limits: Limits = Limits(),
    ) -> EditResult:
        """`speech_track` with `options.lips == "speech"` dubs (`cmet_core.edit.dubbing`); a photo input is
        animated that way, its head moved by `pose_video` or held still. With `options.preview_s`,
        only that window of `src` is edited (a clip preview). `eye_video` is the driving clip whose gaze or
        blinks the output takes (`options.gaze` or `blink` `clip`). `limits` are the operator's, beside the
        user's `options`. `target` is None exactly when `options.faces` gives each face its own."""
        src, dst, report = Path(src), Path(dst), progress or no_progress
        check_eyes(self.backbone, options)
        options.check_eye_video(eye_video is not None)
        eyes = Path(eye_video) if eye_video is not None else None
        if options.faces or target is None:
            if eyes is not None:
                raise InputError(ErrorCode.INVALID_REQUEST, "eyes from a driving clip are offered for one face only")
            return self._several(src, dst, target, options, limits, report, library, speech_track, pose_video)
        if options.lips == "video" and speech_track is not None and pose_video is None:
            done = self._follow_track(src, dst, target, options, limits, report, library, Path(speech_track), eyes)
            return self._measured(done, src, target, options, report)
        if options.lips == "speech" or speech_track is not None or pose_video is not None or is_photo(src):
            if options.preview_s is not None:
                raise InputError(
                    ErrorCode.BAD_PREVIEW_WINDOW, "clip previews of dubs are not offered: dub a shorter speech track"
                )
            track, pose = (Path(p) if p is not None else None for p in (speech_track, pose_video))
            done = Dub(self, src, dst, target, options, limits, report, library, track, pose, eyes).run()
            return self._measured(done, src, target, options, report, speech=track)
        with clip_window(src, options, limits, dst.parent) as windowed:
            if isinstance(target, ClipTimeline) and windowed.duration_s is not None:
                target = target.windowed(windowed.start_s, windowed.duration_s)
            edit = _Edit(self, windowed.src, dst, target, windowed.options, limits, report, library, eye_video=eyes)
            done = edit.run()
            done = self._measured(done, windowed.src, target, windowed.options, report)
        return replace(done, source_frame=done.source_frame + windowed.first)

    def _several(
        self,
        src: Path,
        dst: Path,
        target: EditTarget | None,
        options: EditChoices,
        limits: Limits,
        progress: Progress,
        library: EmotionLibrary | None,
        speech_track: Path | str | None,
        pose_video: Path | str | None,
    ) -> EditResult:
        """Several faces, each with its own target (`options.faces`): a video with its own lips and audio,
        whole or a clip preview's window."""
        if target is not None or not options.faces:
            raise InputError(ErrorCode.INVALID_REQUEST, "give each face its target in faces, or one target: not both")
        if options.lips == "speech" or speech_track is not None or pose_video is not None or is_photo(src):
            raise InputError(
                ErrorCode.INVALID_REQUEST,
                "faces edits a video with its own lips and audio: no dub, speech track or photo",
            )
        with clip_window(src, options, limits, dst.parent) as windowed:
            done = SeveralFaces(self, windowed.src, dst, windowed.options, limits, progress, library).run()
            done = self._measured(done, windowed.src, None, windowed.options, progress)
        return replace(done, source_frame=done.source_frame + windowed.first)

    def _measured(
        self,
        done: EditResult,
        src: Path,
        target: EditTarget | None,
        options: EditChoices,
        progress: Progress,
        *,
        speech: Path | None = None,
    ) -> EditResult:
        """`done` with its quality report (`options.quality`), measured on the written output, timed as a stage.
        Without the `quality` extra the edit keeps its output and carries the problem instead of a report."""
        if not options.quality:
            return done
        clock = Clock()
        report, problem = None, None
        with clock.stage(Stage.QUALITY):
            progress(Stage.QUALITY, 0, 1)
            try:
                spans = spans_of(target, done.timeline, done.duration_s)
                report = assess(src, done.output, spans, speech=speech, config=self.quality)
            except QualityUnavailable as exc:
                log.warning("no quality report: %s", exc)
                problem = QualityProblem(code=exc.code, message=str(exc))
            progress(Stage.QUALITY, 1, 1)
        seconds = {**done.stage_seconds, **clock.seconds}
        return replace(done, stage_seconds=seconds, quality=report, quality_problem=problem)

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
        eyes: Path | None,
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
        followed = voice.model_copy(update={"audio": track})
        return _Edit(self, src, dst, followed, options, limits, progress, library, track, eyes).run()

    def expression_weights(
        self,
        src: Path | str,
        options: EditChoices = EditChoices(),
        progress: Progress | None = None,
        limits: Limits = Limits(),
    ) -> np.ndarray:
        """Every frame's expression code (frames x the backbone's expression width), found and cropped as an edit
        would: the visual side of training data (what the official `compute_alpha_D` gives)."""
        src = Path(src)
        info = probe_input(src, options, limits)
        crop_input = faces.is_face_crop(info.width, info.height)
        plan = face_pass(src, info, options, limits, crop_input, progress or no_progress, self.backbone.framing)
        motion, _, _ = encode_pass(
            self.backbone,
            src,
            plan.boxes,
            plan.source_index,
            self.face_size,
            limits.chunk_frames,
            progress or no_progress,
            Clock(),
        )
        return motion.exp.numpy()


class _Edit:
    """One edit of a video with its own lips; `run` reads top to bottom as the stages happen."""

    def __init__(
        self,
        editor: Editor,
        src: Path,
        dst: Path,
        target: EditTarget,
        options: EditChoices,
        limits: Limits,
        progress: Progress,
        library: EmotionLibrary | None,
        audio: Path | None = None,
        eye_video: Path | None = None,
    ) -> None:
        self.editor, self.src, self.dst, self.target, self.options = editor, src, dst, target, options
        self.progress, self.library, self.limits = progress, library, limits
        self.audio = audio
        """The output's audio instead of the input's own (a speech track the face follows); None: the input's."""
        self.eye_video = eye_video
        """The driving clip of the eyes (`gaze`/`blink` `clip`)."""
        self.clock = Clock()

    def run(self) -> EditResult:
        editor, clock = self.editor, self.clock
        connector = connector_of(editor) if needs_connector(self.target) else None  # one connector per edit
        connector_label = editor.connector_label if connector is not None else ""
        info = probe_input(self.src, self.options, self.limits)
        with clock.stage(Stage.EXPRESSION), clock.networks():
            plan = editor.plan(
                self.target, self.library, self.src, info.duration_s, self.limits, has_audio=info.has_audio
            )
        crop_input = faces.is_face_crop(info.width, info.height)
        found = motion_passes(
            editor.backbone, editor.face_size, self.src, info, self.options, self.limits, self.progress, clock
        )
        exp = edited_expression(
            connector, editor.backbone.device, plan, found.motion.exp, found.times, self.progress, clock
        )
        lips, lip_track = editor.backbone.speech_lips, None
        if lips is not None:  # a backbone whose lips always come from speech: the video's own audio
            with clock.stage(Stage.ENCODE), clock.networks():
                lip_track = audio_lips(lips, self.src, info, found.times, self.limits)
        clip = eye_clip(editor, self.eye_video, self.options, self.limits, self.progress, clock)
        eyes = clip.at(found.times - found.times[0]) if clip is not None else None
        loop = FrameLoop.of(editor, self.options, found.boxes[0].side, clock, self.progress, eyes)
        loop.prepare(lambda: (f.image for f in metered("decode landmarks", read_input(self.src))), found.boxes)
        width, height = loop.output_size(info.width, info.height)
        like = replace(info, width=width, height=height, has_audio=info.has_audio or self.audio is not None)
        inputs: Iterator[PlanesFrame | DecodedFrame] = (
            read_input_planes(self.src) if loop.takes_planes else read_input(self.src)
        )
        decoded = metered("decode render", inputs)
        frames = (Frame(f.image, (found.boxes[f.index],), f.index, f.pts) for f in decoded)
        drive = Drive(found.source, found.motion, torch.arange(len(found.boxes)), exp, lip_track)
        audio = self.audio or (self.src if info.has_audio else None)
        out = video_out(self.dst, like, audio, self.limits.encoding(editor.backbone.device.type == "cuda"))
        loop.run([drive], frames, out, chunk=self.limits.chunk_frames, crop_input=crop_input)
        total = sum(clock.seconds.values())
        facts = {"frames": len(found.boxes), "seconds": round(total, 3), "network_seconds": round(clock.network, 3)}
        log.info(
            "edited %d frames in %.2f s (network %.2f s) with connector %s",
            len(found.boxes),
            total,
            clock.network,
            connector_label,
            extra={**facts, "connector": connector_label},
        )
        return EditResult(
            output=self.dst,
            frames=len(found.boxes),
            fps=float(info.fps),
            duration_s=info.duration_s,
            width=width,
            height=height,
            source_frame=found.source_index,
            face_crop_input=crop_input,
            stage_seconds=clock.seconds,
            network_seconds=clock.network,
            connector=connector_label,
            timeline=plan.timeline,
            voice=plan.voice,
        )
