"""How an edit runs, beyond what emotion it aims at: the user's choices and the operator's limits.

A user's choices for one edit are one model, `EditChoices` (face or faces, restorer, lips, clip window);
the CLI's flags, the API's request schema and the job's `EditSpec` are made from its fields, so a
new option is one field here and reaches every door. The operator's `Limits` (input sizes,
encoding) travel beside the choices, never inside them: a user cannot set them, and a deployment
sets them once. Probing an input and the face pass take both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from cmet_core import faces
from cmet_core.emotion.targets import EmotionSpec, EmotionTarget, Intensity
from cmet_core.emotion.timeline import DEFAULT_MAX_SEGMENTS, ClipTimeline
from cmet_core.enhance.options import EnhanceChoice
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.mel import FPS as LIP_FPS
from cmet_core.media.photo import is_photo, photo_size
from cmet_core.media.video import DEFAULT_PRESET, Encoding, VideoEncoder, VideoInfo, X264Preset, choose_encoding, probe
from cmet_core.settings import DEFAULT_MAX_FACES, MAX_FACES

MAX_REFERENCE_S = 30.0
"""Longest expression reference clip: a reference shows one expression, so a few seconds say all it has to say."""
DEFAULT_MAX_DURATION_S = 600.0
DEFAULT_MAX_FRAMES = 36_000  # 10 minutes at 60 fps
DEFAULT_MAX_PIXELS_PER_SECOND = 1920 * 1080 * 60  # 1080p at 60 fps
MAX_FACE_INDEX = 64

Lips = Annotated[
    Literal["video", "speech"],
    Field(description="Where the lip motion comes from: the input video's own, or `speech_track` (dubbing)."),
]
PoseFill = Annotated[
    Literal["bounce", "loop", "hold"],
    Field(
        description="When the speech outlasts the pose source: play it back and forth (bounce), "
        "from the start again (loop), or hold its last frame."
    ),
]


class LipChoice(BaseModel):
    """Dubbing options, defined once for the CLI, the API's request and the job's spec."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lips: Lips = "video"
    pose_fill: PoseFill = "bounce"


FaceIndex = Annotated[
    int,
    Field(ge=0, le=MAX_FACE_INDEX, description="Edit the i-th face from the left (in the first frame showing faces)."),
]
FaceBox = Annotated[
    tuple[FiniteFloat, FiniteFloat, FiniteFloat, FiniteFloat],
    Field(description="Edit the face overlapping this box (x0, y0, x1, y1 in pixels of the upright frame)."),
]
SourceFrame = Annotated[int, Field(ge=0, description="Frame whose face is the identity source.")]
Gaze = Annotated[
    Literal["keep", "off", "clip"],
    Field(
        description="keep: the input's gaze; off: the eyes do not move; clip: the gaze of `eye_video`, a driving "
        "clip (a backbone with a gaze code: pdfgc)."
    ),
]
Blink = Annotated[
    Literal["keep", "off", "clip"],
    Field(
        description="keep: the input's blinks; off: no blinking; clip: the blinks of `eye_video`, a driving clip "
        "(a backbone with a blink code: pdfgc)."
    ),
]
EYE_PARTS = ("gaze", "blink")


class EyeChoice(BaseModel):
    """Eye motion a backbone with separate eye codes can switch off or take from a driving clip (PD-FGC's gaze
    and blink parts); the clip itself is an input beside the choices (`eye_video`), as a dub's speech track is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gaze: Gaze = "keep"
    blink: Blink = "keep"

    def _parts(self, value: str) -> frozenset[str]:
        return frozenset(name for name in EYE_PARTS if getattr(self, name) == value)

    def eyes_off(self) -> frozenset[str]:
        """The eye motions switched off, by the names a backbone's `controls` use."""
        return self._parts("off")

    def eyes_from_clip(self) -> frozenset[str]:
        """The eye motions taken from the driving clip."""
        return self._parts("clip")

    def eye_controls(self) -> frozenset[str]:
        """Every eye motion not kept as the input's: what the backbone must have."""
        return self.eyes_off() | self.eyes_from_clip()

    def check_eye_video(self, given: bool) -> None:
        """A driving clip is given exactly when gaze or blink is `clip` (one rule at submission and in the edit)."""
        if self.eyes_from_clip() and not given:
            names = " and ".join(sorted(self.eyes_from_clip()))
            raise InputError(ErrorCode.EYE_VIDEO_MISSING, f"{names} clip needs eye_video, the clip the eyes follow")
        if given and not self.eyes_from_clip():
            raise InputError(ErrorCode.EYE_VIDEO_UNUSED, "eye_video is only read with gaze: clip or blink: clip")


class FaceChoice(EnhanceChoice, EyeChoice):
    """Which face an edit changes and which frame gives its identity; default: the largest, most
    central face and the first confident frontal frame. The restorer's and the eyes' options come with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    face_index: FaceIndex | None = None
    face_box: FaceBox | None = None
    source_frame: SourceFrame | None = None

    @model_validator(mode="after")
    def _one_face_choice(self) -> FaceChoice:
        if self.face_index is not None and self.face_box is not None:
            raise ValueError("give face_index or face_box, not both")
        if self.face_box is not None:
            x0, y0, x1, y1 = self.face_box
            if not (x1 > x0 and y1 > y0):
                raise ValueError("face_box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0")
        return self

    def face_selection(self) -> faces.FaceSelection:
        box = faces.Box(*self.face_box) if self.face_box is not None else None
        return faces.FaceSelection(index=self.face_index, box=box)


SPEAKER = "speaker"
"""A `faces` entry's select that means whoever is speaking (found from the soundtrack and the mouths)."""

FaceSelect = Annotated[
    FaceIndex | FaceBox | Literal["speaker"],
    Field(
        description="Which face: its index from the left (in the first frame showing faces), a box (x0, y0, x1, y1) "
        "overlapping it, or `speaker`: over each stretch of the clip, the face whose mouth follows the soundtrack's "
        "speech (the other faces that no entry selects are the candidates).",
        examples=[0, [10, 20, 200, 240], "speaker"],
    ),
]


class FaceTarget(EmotionTarget):
    """One face of a several-face edit and what it becomes: any target a one-face edit takes, in the same fields
    (an emotion: library name, blend, custom emotion id or `from_audio`; speech clips; an expression reference)
    at its own intensity, or a timeline of its own. Its files are local paths (the CLI's plan): a request to the
    service gives a face an emotion or a timeline of named emotions (files are refused, `invalid_request`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    select: FaceSelect
    timeline: ClipTimeline | None = Field(default=None, description="This face's own timeline (as `--timeline`'s).")

    @model_validator(mode="after")
    def _one_source(self) -> FaceTarget:
        """The one-face rule (exactly one source, neutral clips only beside speech clips) with a timeline counted."""
        sources = (self.emotion is not None) + bool(self.speech) + (self.expression_reference is not None)
        if sources + (self.timeline is not None) != 1:
            raise ValueError(
                "give each face exactly one of an emotion (name or blend), speech clips, an expression reference "
                "and a timeline"
            )
        if self.neutral_speech and not self.speech:
            raise ValueError("neutral speech only makes sense with speech clips")
        if isinstance(self.select, tuple):
            x0, y0, x1, y1 = self.select
            if not (x1 > x0 and y1 > y0):
                raise ValueError("a select box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0")
        return self

    def edit_target(self) -> EmotionTarget | ClipTimeline:
        """What this face is edited toward, as a one-face edit's target (`from_audio` there follows the clip's
        voice, as an edit's does)."""
        if self.timeline is not None:
            return self.timeline
        return EmotionTarget.model_validate(self.model_dump(include=set(EmotionTarget.model_fields)))

    def rooted_at(self, folder: Path) -> FaceTarget:
        """The same entry with relative clip and reference paths taken from `folder` (a plan file's)."""
        ref = self.expression_reference
        return self.model_copy(
            update={
                "speech": tuple(folder / p for p in self.speech),
                "neutral_speech": tuple(folder / p for p in self.neutral_speech),
                "expression_reference": folder / ref if ref is not None else None,
                "timeline": self.timeline.rooted_at(folder) if self.timeline is not None else None,
            }
        )

    def files(self) -> list[Path]:
        """Every local file this face's target reads (speech clips, references, its timeline's)."""
        timeline = self.timeline.files() if self.timeline is not None else []
        own = [*self.speech, *self.neutral_speech]
        return [*own, *([self.expression_reference] if self.expression_reference is not None else []), *timeline]

    @property
    def speaker(self) -> bool:
        return self.select == SPEAKER

    def face_selection(self) -> faces.FaceSelection | None:
        """The face this entry selects; None for the speaker (chosen over time, not by place)."""
        if isinstance(self.select, str):
            return None
        if isinstance(self.select, tuple):
            return faces.FaceSelection(box=faces.Box(*self.select))
        return faces.FaceSelection(index=self.select)

    def label(self) -> str:
        """How messages and output names refer to this entry's face."""
        if isinstance(self.select, tuple):
            return "face box " + ",".join(f"{v:g}" for v in self.select)
        return SPEAKER if isinstance(self.select, str) else f"face {self.select}"


FaceTargets = Annotated[
    tuple[FaceTarget, ...],
    Field(
        max_length=MAX_FACES,
        description="Several faces in one edit, each with its own emotion and intensity (instead of the top-level "
        "emotion and face_index or face_box); at most the deployment's CMET_MAX_FACES.",
    ),
]


class FacesChoice(BaseModel):
    """Several faces in one edit (`faces`); empty: the one face of `FaceChoice` with the edit's own target."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    faces: FaceTargets = ()

    def check_faces(self, max_faces: int, has_audio: bool) -> None:
        """What can be refused before any frame is decoded: too many entries, one face selected twice by the
        same index or two speakers, a speaker without audio. A box selecting an already selected face is found
        by the face pass."""
        if len(self.faces) > max_faces:
            raise InputError(
                ErrorCode.TOO_MANY_FACES,
                f"{len(self.faces)} faces asked for; this deployment edits at most {max_faces}",
            )
        seen: set[object] = set()
        for entry in self.faces:
            key = entry.select if not isinstance(entry.select, tuple) else None
            if key is not None and key in seen:
                raise InputError(ErrorCode.FACE_SELECTED_TWICE, f"two entries of faces select {entry.label()}")
            seen.add(key)
        if not has_audio and any(entry.speaker for entry in self.faces):
            raise InputError(
                ErrorCode.SPEAKER_NEEDS_AUDIO, "select: speaker needs a clip with audio; this one has none"
            )


MAX_PREVIEW_S = 30.0
"""Longest clip preview: a preview answers in seconds; longer windows are what a full edit is for."""

PreviewSeconds = Annotated[
    float,
    Field(gt=0, le=MAX_PREVIEW_S, description="Render only this many seconds of the input (a clip preview)."),
]
PreviewStart = Annotated[
    FiniteFloat, Field(ge=0, description="Where the clip preview's window starts, in seconds from the first frame.")
]


class ClipWindow(BaseModel):
    """A clip preview: only the window [preview_start_s, preview_start_s + preview_s) is edited, with its audio."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preview_s: PreviewSeconds | None = None
    preview_start_s: PreviewStart = 0.0

    @model_validator(mode="after")
    def _start_needs_length(self) -> ClipWindow:
        if self.preview_s is None and self.preview_start_s != 0:
            raise ValueError("preview_start_s needs preview_s (the window's length)")
        return self

    def check_window(self, info: VideoInfo) -> None:
        """A window that starts at or past the clip's end holds no frame: refused before any work."""
        if self.preview_s is not None and self.preview_start_s >= info.duration_s:
            raise InputError(
                ErrorCode.BAD_PREVIEW_WINDOW,
                f"the preview starts at {self.preview_start_s:g} s, the clip is {info.duration_s:.2f} s long",
            )


MAX_SHEET_EMOTIONS = 8
MAX_SHEET_INTENSITIES = 6
DEFAULT_INTENSITIES = (0.5, 1.0, 1.5)
"""A contact sheet's rows and columns at most (48 cells), and its columns unless asked otherwise."""

SheetFrame = Annotated[int, Field(ge=0, description="Frame shown in every cell; default: the identity source frame.")]


class SheetChoice(BaseModel):
    """What a contact sheet shows: rows of emotions (names, blends or custom ids) by columns of intensities."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    emotions: tuple[EmotionSpec, ...] = Field(
        min_length=1, max_length=MAX_SHEET_EMOTIONS, description="One row per emotion.", examples=[["happy", "sad"]]
    )
    intensities: tuple[Intensity, ...] = Field(
        default=DEFAULT_INTENSITIES,
        min_length=1,
        max_length=MAX_SHEET_INTENSITIES,
        description="One column per intensity.",
    )
    frame: SheetFrame | None = None

    @model_validator(mode="after")
    def _no_repeats(self) -> SheetChoice:
        if len(set(self.emotions)) != len(self.emotions):
            raise ValueError("emotions repeat: give each row once")
        if len(set(self.intensities)) != len(self.intensities):
            raise ValueError("intensities repeat: give each column once")
        return self


Quality = Annotated[
    bool,
    Field(
        description="Measure the output against the input (identity, lips, steadiness, emotion, faces) and return "
        "the report with the result; a few per cent of the edit's time."
    ),
]


class EditChoices(FaceChoice, FacesChoice, LipChoice, ClipWindow):
    """Everything a user chooses about one edit besides its target (emotion, speech clips, timeline):
    which face and identity frame, the restorer, the lips, the clip window. A new edit option is a
    field here (or on the feature's own base, such as `EnhanceChoice`); everything else follows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quality: Quality = True

    @model_validator(mode="after")
    def _faces_or_one_face(self) -> EditChoices:
        if self.faces and (self.face_index is not None or self.face_box is not None):
            raise ValueError("give faces (each with its select) or face_index / face_box, not both")
        if self.faces and self.lips == "speech":
            raise ValueError("faces edits a video with its own lips: no dub (lips: speech)")
        return self

    @classmethod
    def of(cls, source: BaseModel) -> EditChoices:
        """The choices carried by a request, a spec or any model with some of these fields (the others
        keep their defaults), taken in one call so that no field is left behind."""
        return cls.model_validate(source.model_dump(include=set(cls.model_fields)))


class Limits(BaseModel):
    """What the operator, not the user, sets for every edit: input limits and encoding."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_duration_s: float = Field(default=DEFAULT_MAX_DURATION_S, gt=0, description="Longer inputs are refused.")
    max_frames: int = Field(default=DEFAULT_MAX_FRAMES, gt=0, description="Inputs with more frames are refused.")
    max_pixels_per_second: float = Field(
        default=DEFAULT_MAX_PIXELS_PER_SECOND,
        gt=0,
        description="Inputs with more width x height x frame rate are refused.",
    )
    max_missing_faces: float = Field(
        default=0.1, ge=0, le=1, description="Share of frames that may lack a face (gaps are bridged)."
    )
    crf: int = Field(default=18, ge=0, le=51, description="H.264 quality (lower is better and bigger).")
    encoder: VideoEncoder = Field(
        default="auto", description="Video encoder: auto is NVENC's H.264 on a CUDA worker that has it, else libx264."
    )
    preset: X264Preset = Field(default=DEFAULT_PRESET, description="libx264's speed/size trade-off at the same CRF.")
    chunk_frames: int = Field(default=16, ge=1, le=256, description="Frames decoded, encoded and rendered per step.")
    max_timeline_segments: int = Field(
        default=DEFAULT_MAX_SEGMENTS, ge=1, description="Timelines with more segments are refused."
    )
    max_faces: int = Field(
        default=DEFAULT_MAX_FACES, ge=1, le=MAX_FACES, description="Edits with more `faces` entries are refused."
    )

    def encoding(self, cuda: bool) -> Encoding:
        """How an edit encodes its output (`cuda`: it runs on a GPU, where NVENC may encode)."""
        return choose_encoding(self.encoder, self.preset, self.crf, cuda)


def face_plan(
    src: Path,
    info: VideoInfo,
    choice: FaceChoice,
    limits: Limits,
    crop_input: bool,
    progress: Callable[[int, int], None],
    limit: int | None = None,
) -> faces.FacePlan:
    """The face pass with the user's face choice and source frame under the operator's gap limit (an
    edit's and a contact sheet's)."""
    return faces.find_faces(
        src,
        info,
        crop_input=crop_input,
        selection=choice.face_selection(),
        max_missing=limits.max_missing_faces,
        source_frame=choice.source_frame,
        progress=progress,
        limit=limit,
    )


def probe_input(path: Path, choices: EditChoices, limits: Limits) -> VideoInfo:
    """The input's probe under `limits`, with the choices that depend on it (`upscale`, `source_frame`,
    the preview window) checked against it: the API refuses an upload with them at submission, the
    pipeline any input before decoding."""
    info = probe(path, limits.max_duration_s, limits.max_frames, limits.max_pixels_per_second)
    choices.check_upscale(info.width, info.height)
    if choices.source_frame is not None and choices.source_frame >= info.frame_count:
        raise InputError(
            ErrorCode.BAD_SOURCE_FRAME,
            f"source frame {choices.source_frame} is outside the clip (frames 0-{info.frame_count - 1})",
        )
    choices.check_window(info)
    choices.check_faces(limits.max_faces, info.has_audio)
    return info


def probe_reference(path: Path, limits: Limits) -> VideoInfo | None:
    """An expression reference under `limits`: a photo within the pixels of a 25 fps frame (None), or a clip's
    probe of at most `MAX_REFERENCE_S`; the API checks an uploaded reference with it, the edit any reference."""
    if is_photo(path):
        photo_size(path, limits.max_pixels_per_second / LIP_FPS)
        return None
    return probe(path, min(limits.max_duration_s, MAX_REFERENCE_S), limits.max_frames, limits.max_pixels_per_second)
