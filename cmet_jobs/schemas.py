"""The API's request and response bodies (pydantic v2); `openapi.yaml` is generated from these."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from cmet_core.emotion.targets import MAX_SPEECH_CLIPS, EmotionChoice
from cmet_core.emotion.timeline import ReferenceTarget, Timeline
from cmet_core.emotion.voice import VoiceChoice
from cmet_core.errors import ErrorCode
from cmet_core.options import EditChoices, FaceChoice, FaceTarget, SheetChoice
from cmet_jobs.results import EditResult
from cmet_jobs.states import BatchState, DeliveryState, EmotionState, JobState

EditEventType = Literal["edit.running", "edit.progress", "edit.succeeded", "edit.failed", "edit.canceled"]
PreviewEventType = Literal["preview.running", "preview.succeeded", "preview.failed", "preview.canceled"]
WebhookEvent = Literal[EditEventType, PreviewEventType]
ALL_EVENTS: tuple[WebhookEvent, ...] = get_args(WebhookEvent)
"""Previews (clip previews and contact sheets) send `preview.*`, every other job `edit.*`."""
BatchEventType = Literal["batch.completed"]
"""A batch sends one event of its own when its last edit ends; its edits send theirs as any edit does."""

AssetId = Annotated[str, Field(pattern=r"^ast_[0-9a-f]{32}$", examples=["ast_0123456789abcdef0123456789abcdef"])]
HttpsUrl = Annotated[str, Field(min_length=8, max_length=2048, examples=["https://example.com/talk.mp4"])]


def _default_events() -> list[WebhookEvent]:
    return [e for e in ALL_EVENTS if e != "edit.progress"]


def _only_events_of(events: list[WebhookEvent], kind: str) -> None:
    """A subscription to events the job never sends is refused: it would be accepted and never fire."""
    other = [e for e in events if not e.startswith(f"{kind}.")]
    if other:
        raise ValueError(f"this job sends only {kind}.* events, never {', '.join(other)}")


class SegmentSpeech(BaseModel):
    """A timeline segment's target taken from speech clips: uploaded assets and/or URLs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    speech_assets: list[AssetId] = Field(default_factory=list, max_length=MAX_SPEECH_CLIPS)
    speech_urls: list[HttpsUrl] = Field(default_factory=list, max_length=MAX_SPEECH_CLIPS)

    @model_validator(mode="after")
    def _some_clip(self) -> SegmentSpeech:
        if not self.speech_assets and not self.speech_urls:
            raise ValueError("give speech_assets or speech_urls")
        if len(self.speech_assets) + len(self.speech_urls) > MAX_SPEECH_CLIPS:
            raise ValueError(f"at most {MAX_SPEECH_CLIPS} speech clips per segment")
        return self


class SegmentReference(ReferenceTarget):
    """A timeline segment's target taken from an expression reference (a photo or short clip of a face making
    the wanted expression): an uploaded asset (kind `video`) or a URL."""

    expression_reference_asset: AssetId | None = None
    expression_reference_url: HttpsUrl | None = None

    @model_validator(mode="after")
    def _one_reference(self) -> SegmentReference:
        if (self.expression_reference_asset is None) == (self.expression_reference_url is None):
            raise ValueError("give expression_reference_asset or expression_reference_url, once")
        return self


class EditTimeline(Timeline[SegmentSpeech | SegmentReference]):
    """Segments `{start_s, end_s, target, intensity, keyframes}`: `target` is what `emotion` takes
    (name, blend or custom emotion id), `{speech_assets, speech_urls}` or an expression reference
    (`{expression_reference_asset}` or `{expression_reference_url}`). Outside every segment the face keeps
    its own expression; edges fade over `transition_s`."""


class ShownSpeech(BaseModel):
    """A segment's speech target as a job shows it: how many clips it was taken from."""

    speech_clips: int


class ShownReference(ReferenceTarget):
    """A segment's expression reference as a job shows it."""

    expression_reference: Literal[True] = True


class AppliedTimeline(Timeline[ShownSpeech | ShownReference]):
    """The timeline a job applies, as submitted (custom emotion ids resolved to names)."""


def _json_text(value: Any) -> Any:
    """A multipart form sends the timeline as a JSON string field."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"timeline is not valid JSON: {exc}") from None
    return value


class EditCreate(EmotionChoice, VoiceChoice, EditChoices):
    """A new edit. The video (or, to animate it, a photo) comes as a multipart part `video`, a
    `video_url` or a `video_asset`; the emotion as `emotion` (built-in name, custom emotion id,
    blend, or `from_audio`: the face follows the emotion of the voice, the video's own or a dub's
    speech track), speech clips, an expression reference (part `expression_reference`,
    `expression_reference_url` or `expression_reference_asset`: a photo or short clip of a face making
    the wanted expression, which needs no connector), or a `timeline`. To dub, `lips: "speech"` with a speech track
    (part `speech_track`, `speech_track_url` or `speech_track_asset`); a photo's head motion from a
    pose video (part `pose_video`, `pose_video_url` or `pose_video_asset`). With `gaze` or `blink` `clip`
    (PD-FGC sets), the eyes follow a driving clip (part `eye_video`, `eye_video_url` or `eye_video_asset`).
    The options (emotion,
    intensity, face choice, source frame, lips, pose fill, enhance) are the same as `cmet edit`'s flags.
    With `preview_s` it is a clip preview: only that window is rendered, on the preview queue, and
    the job is listed under /v1/previews."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video_url: HttpsUrl | None = None
    video_asset: AssetId | None = None
    speech_urls: list[HttpsUrl] = Field(default_factory=list, max_length=MAX_SPEECH_CLIPS)
    speech_assets: list[AssetId] = Field(default_factory=list, max_length=MAX_SPEECH_CLIPS)
    speech_track_url: HttpsUrl | None = None
    speech_track_asset: AssetId | None = None
    pose_video_url: HttpsUrl | None = None
    pose_video_asset: AssetId | None = None
    expression_reference_url: HttpsUrl | None = None
    expression_reference_asset: AssetId | None = None
    eye_video_url: HttpsUrl | None = None
    eye_video_asset: AssetId | None = None
    webhook_url: HttpsUrl | None = None
    webhook_events: list[WebhookEvent] = Field(default_factory=_default_events)
    timeline: Annotated[EditTimeline | None, BeforeValidator(_json_text)] = None
    dry_run: bool = Field(
        default=False,
        description="Check everything and store nothing: 200 with an `EditEstimate` (frames, size, estimated "
        "seconds) instead of a job.",
    )

    @model_validator(mode="after")
    def _one_video_reference(self) -> EditCreate:
        for name in ("video", "speech_track", "pose_video", "expression_reference", "eye_video"):
            if getattr(self, f"{name}_url") is not None and getattr(self, f"{name}_asset") is not None:
                raise ValueError(f"give the {name} once: {name}_url or {name}_asset (or the multipart part `{name}`)")
        return self

    @model_validator(mode="after")
    def _events_of_its_kind(self) -> EditCreate:
        if "webhook_events" in self.model_fields_set:  # the default names both kinds: an edit may be a clip
            _only_events_of(self.webhook_events, "preview" if self.preview_s is not None else "edit")
        return self


class PreviewCreate(SheetChoice, FaceChoice):
    """A new contact sheet: one frame of the video (`frame`, default the identity source frame) under each
    of `emotions` (rows: names, blends or custom emotion ids) x `intensities` (columns). The video comes
    as a multipart part `video`, a `video_url` or a `video_asset`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    video_url: HttpsUrl | None = None
    video_asset: AssetId | None = None
    webhook_url: HttpsUrl | None = None
    webhook_events: list[WebhookEvent] = Field(
        default_factory=lambda: [e for e in ALL_EVENTS if e.startswith("preview.")]
    )

    @model_validator(mode="after")
    def _one_video_reference(self) -> PreviewCreate:
        if self.video_url is not None and self.video_asset is not None:
            raise ValueError("give the video once: video_url or video_asset (or the multipart part `video`)")
        _only_events_of(self.webhook_events, "preview")
        return self


class JobError(BaseModel):
    code: ErrorCode
    message: str


def job_error(code: str | None, message: str | None) -> JobError | None:
    """The error of a record (job or custom emotion) that has one."""
    return JobError(code=ErrorCode(code), message=message or "") if code else None


class EditResultInfo(EditResult):
    pass


class JobRecord(BaseModel):
    """What every job shows, whatever its kind (`cmet_jobs.jobs` fills it from the record)."""

    id: str
    state: JobState = Field(description="Never `creating`: a job is visible once its inputs are stored.")
    progress: float = Field(ge=0, le=1)
    stage: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None


class Job(JobRecord):
    object: Literal["edit"] = "edit"
    video_name: str | None = Field(
        default=None,
        description="The input video's file name: an uploaded asset's, or a video_url's last path segment; "
        "null for a multipart part.",
    )
    emotion: str | None
    intensity: float
    timeline: AppliedTimeline | None = Field(default=None, description="The timeline this edit applies, if any.")
    faces: list[FaceTarget] | None = Field(default=None, description="Several faces, each with its target, if any.")
    result: EditResultInfo | None
    output_url: str | None = Field(description="Presigned download of the result, signed anew on every read.")
    preview_s: float | None = Field(default=None, description="Set on a clip preview: the seconds it renders.")
    preview_start_s: float = Field(default=0.0, description="Where a clip preview's window starts.")


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Job]
    next_cursor: str | None


class PreviewCell(BaseModel):
    emotion: str
    intensity: float
    url: str = Field(description="Presigned PNG of the whole edited frame, signed anew on every read.")


class Preview(JobRecord):
    """A clip preview (`kind` clip: `output_url`, an mp4 of the window) or a contact sheet (`kind` sheet:
    `sheet_url`, the labelled grid, and `cells`, row by row). URLs are set once the preview succeeded."""

    object: Literal["preview"] = "preview"
    kind: Literal["clip", "sheet"]
    emotions: list[str] = Field(description="Sheet: its rows; clip: the one emotion (empty for speech clips).")
    intensities: list[float] = Field(description="Sheet: its columns; clip: the one intensity.")
    frame: int | None = Field(description="Sheet: the frame shown (known once it succeeded).")
    preview_s: float | None = Field(description="Clip: the seconds rendered.")
    preview_start_s: float | None
    sheet_url: str | None = Field(description="Sheet: presigned PNG of the labelled grid.")
    cells: list[PreviewCell] = Field(description="Sheet: each cell's image, rows (emotions) first.")
    output_url: str | None = Field(description="Clip: presigned mp4 of the window, with its audio.")
    result: EditResultInfo | None = Field(description="Clip: what was rendered.")


class PreviewList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Preview]
    next_cursor: str | None


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["video", "speech"]
    size: int = Field(
        ge=1,
        description="The file's size in bytes (at most the kind's limit): the upload URL is signed for exactly "
        "this many, so a PUT of any other size is refused by the store.",
    )
    filename: str = Field(default="", max_length=300)
    content_type: str = Field(default="", max_length=100)


class Upload(BaseModel):
    id: str
    upload_url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    max_bytes: int
    expires_in: int


class Asset(BaseModel):
    """An uploaded asset. Edits copy it when they are accepted, so changing or deleting it later
    does not touch them; it is deleted once no new edit used it for the retention period."""

    id: str
    object: Literal["asset"] = "asset"
    filename: str
    content_type: str
    max_bytes: int
    uploaded: bool = Field(description="Whether a file was PUT to the upload URL.")
    size: int | None = Field(description="Bytes of the uploaded file; null until one is uploaded.")
    created_at: datetime
    last_used_at: datetime | None = Field(description="When an edit last named it.")
    expires_at: datetime = Field(description="When it is deleted unless an edit names it before then.")


class AssetList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Asset]
    next_cursor: str | None


class Emotion(BaseModel):
    id: str
    name: str
    kind: Literal["basic", "extended", "custom"]
    state: EmotionState = Field(description="Custom emotions are built by a worker from their clips.")
    error: JobError | None = None


class EmotionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Emotion]


class ModelInfo(BaseModel):
    kind: str
    name: str
    version: str
    sha256: str


class ServedConnector(BaseModel):
    """The connector the workers serve: the set's own, or a registry version (pinned or `latest`)."""

    selection: str = Field(description="'set' (the model set's own), 'latest', or the pinned version.")
    name: str
    version: str
    sha256: str
    registry: str | None = Field(default=None, description="Where registry versions come from; null for the set's own.")
    source: str = Field(description="How the weights came to be (trained, converted file, hub, ...).")
    training_steps: int | None = None
    parent: str | None = Field(default=None, description="Registry version training started from.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Evaluation figures recorded at export.")


class ModelSetInfo(BaseModel):
    name: str
    version: str
    backbone: str = Field(description="The generator the set's edits run on (edtalk, pdfgc).")
    models: list[ModelInfo]
    connector: ServedConnector | None = Field(
        description="Null when the set has no connector and none is served (edits fail with connector_missing)."
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class DeliveryAttempt(BaseModel):
    at: datetime
    status: int | None = Field(description="HTTP status the receiver answered; null when the call failed.")
    error: str | None
    duration_ms: int


class WebhookDelivery(BaseModel):
    id: str
    event: WebhookEvent
    msg_id: str = Field(description="The `webhook-id` header: the same for every attempt and replay of this event.")
    state: DeliveryState
    url: str
    attempts: list[DeliveryAttempt]
    next_attempt_at: datetime | None
    created_at: datetime


class WebhookDeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookDelivery]


class ProbeFace(BaseModel):
    frame: int = Field(description="The first frame where the face the edit would take was found.")
    box: list[float] = Field(min_length=4, max_length=4, description="x0, y0, x1, y1 in pixels of the upright frame.")


class Probe(BaseModel):
    """What an edit of an uploaded video would start from: `pending` until a worker measured it;
    `failed` carries the code an edit of it would fail with (too long, not a video, no face, ...)."""

    object: Literal["probe"] = "probe"
    state: Literal["pending", "ready", "failed"]
    duration_s: float | None = None
    fps: float | None = None
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    has_audio: bool | None = None
    face: ProbeFace | None = None
    faces: list[list[float]] | None = Field(
        default=None,
        description="Every face of `face.frame`, from the left, each x0, y0, x1, y1: a `faces` entry's `select` "
        "index counts them.",
    )
    error: JobError | None = None


class WebhookSecret(BaseModel):
    """A key's new webhook secret, shown once; the old one signs deliveries beside it until `previous_valid_until`."""

    webhook_secret: str = Field(description="`whsec_` and base64: the key of the deliveries' HMAC-SHA256 signatures.")
    previous_valid_until: datetime = Field(description="Until then every delivery carries both signatures.")
    grace_s: int = Field(description="The deployment's grace period (`CMET_WEBHOOK_SECRET_GRACE_S`).")


class EditEvent(BaseModel):
    """The body of an edit's webhook (a clip preview sends `PreviewEvent`): compact JSON, signed as it is sent."""

    type: EditEventType
    timestamp: datetime = Field(description="When the event happened (the job's state changed).")
    data: Job = Field(description="The edit as `GET /v1/edits/{id}` shows it then.")


class PreviewEvent(BaseModel):
    """The body of a preview's webhook (clip previews and contact sheets)."""

    type: PreviewEventType
    timestamp: datetime = Field(description="When the event happened (the job's state changed).")
    data: Preview = Field(description="The preview as `GET /v1/previews/{id}` shows it then.")


class EditEstimate(BaseModel):
    """The answer to `dry_run: true`: the request passed every check and nothing was stored. Frames and
    size are known for a video sent in the request; `estimated_seconds` (running time, not queue time)
    once the deployment has finished edits to measure its pixel rate on."""

    object: Literal["estimate"] = "estimate"
    frames: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    width: int | None = Field(default=None, description="The output keeps the input's frame size (not `upscale`).")
    height: int | None = None
    estimated_seconds: float | None = None
    measured_jobs: int = Field(description="How many recent edits the pixel rate was measured over.")


class BatchCreate(BaseModel):
    """Edits submitted together: each is an `EditCreate` with its own options, its inputs named by URL or
    uploaded asset (a batch is JSON: no file parts). Accepted or refused as a whole: every edit passes
    every check and the key's quotas have room for all of them (each counts as one submission and one
    job), or nothing is stored. At most `CMET_MAX_BATCH_EDITS` edits (50)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    edits: list[EditCreate] = Field(min_length=1, description="Full edits; neither `dry_run` nor `preview_s`.")
    webhook_url: HttpsUrl | None = Field(
        default=None, description="Where `batch.completed` goes (each edit names its own `webhook_url`)."
    )
    webhook_events: list[BatchEventType] = Field(default_factory=lambda: list(get_args(BatchEventType)))


class BatchCounts(BaseModel):
    """How many of the batch's edits are in each state; `deleted` were deleted after they ended."""

    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int
    deleted: int


class Batch(BaseModel):
    id: str
    object: Literal["batch"] = "batch"
    state: BatchState
    total: int = Field(description="Edits in the batch.")
    counts: BatchCounts
    edit_ids: list[str] = Field(description="The edits' ids in the order they were submitted (`GET /v1/edits/{id}`).")
    created_at: datetime
    completed_at: datetime | None = Field(description="When its last edit ended.")


class BatchEvent(BaseModel):
    """The body of a batch's webhook."""

    type: BatchEventType
    timestamp: datetime = Field(description="When the batch's last edit ended.")
    data: Batch = Field(description="The batch as `GET /v1/batches/{id}` shows it then.")
