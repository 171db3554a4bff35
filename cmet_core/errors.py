"""Error codes and the error type for anything wrong with what a user sent (as opposed to a fault of ours).

`ErrorCode` is the one catalogue of machine-readable codes: the CLI prints `[code]` and exits 2
for a user's fault, the API answers problem+json with the code's HTTP status, a failed job
carries its code. Every layer maps an `InputError` the same way.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every code a client, an operator or a script may see; `status` and `meaning` come from the catalogue."""

    # the input media
    NOT_FOUND = "not_found"
    NOT_MEDIA = "not_media"
    NO_VIDEO_STREAM = "no_video_stream"
    ZERO_FRAMES = "zero_frames"
    TOO_LONG = "too_long"
    TOO_MANY_FRAMES = "too_many_frames"
    TOO_MANY_PIXELS = "too_many_pixels"
    DECODE_FAILED = "decode_failed"
    NO_AUDIO = "no_audio"
    EMPTY_AUDIO = "empty_audio"
    EMPTY_FILE = "empty_file"
    FILE_TOO_LARGE = "file_too_large"
    SILENT_SPEECH = "silent_speech"
    SPEECH_TOO_LONG = "speech_too_long"
    SPEECH_TOO_SHORT = "speech_too_short"
    BAD_PHOTO = "bad_photo"
    # faces
    NO_FACE = "no_face"
    BAD_FACE_SELECTION = "bad_face_selection"
    BAD_SOURCE_FRAME = "bad_source_frame"
    FACE_SELECTED_TWICE = "face_selected_twice"
    TOO_MANY_FACES = "too_many_faces"
    SPEAKER_NEEDS_AUDIO = "speaker_needs_audio"
    # the face restorer
    RESTORER_UNAVAILABLE = "restorer_unavailable"
    EYE_CONTROL_UNSUPPORTED = "eye_control_unsupported"
    BAD_UPSCALE = "bad_upscale"
    # previews
    BAD_PREVIEW_FRAME = "bad_preview_frame"
    BAD_PREVIEW_WINDOW = "bad_preview_window"
    # the emotion target
    UNKNOWN_EMOTION = "unknown_emotion"
    BAD_EMOTION = "bad_emotion"
    BAD_SPEECH = "bad_speech"
    BAD_LIBRARY = "bad_library"
    TIMELINE_BAD_TIMES = "timeline_bad_times"
    TIMELINE_OVERLAP = "timeline_overlap"
    TIMELINE_PAST_END = "timeline_past_end"
    TIMELINE_TOO_MANY_SEGMENTS = "timeline_too_many_segments"
    # the request
    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    BODY_TOO_LARGE = "body_too_large"
    VIDEO_MISSING = "video_missing"
    EMOTION_MISSING = "emotion_missing"
    SPEECH_MISSING = "speech_missing"
    SPEECH_TRACK_MISSING = "speech_track_missing"
    SPEECH_TRACK_UNUSED = "speech_track_unused"
    PHOTO_NEEDS_SPEECH = "photo_needs_speech"
    POSE_VIDEO_NEEDS_PHOTO = "pose_video_needs_photo"
    EYE_VIDEO_MISSING = "eye_video_missing"
    EYE_VIDEO_UNUSED = "eye_video_unused"
    BAD_CURSOR = "bad_cursor"
    OUTPUT_EXISTS = "output_exists"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"
    # who asks, and how often
    UNAUTHORIZED = "unauthorized"
    BAD_SIGNATURE = "bad_signature"
    CONCURRENT_LIMIT = "concurrent_limit"
    RATE_LIMIT = "rate_limit"
    CONCURRENT_SUBMISSIONS = "concurrent_submissions"
    STREAM_LIMIT = "stream_limit"
    ASSET_LIMIT = "asset_limit"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"
    BATCH_TOO_LARGE = "batch_too_large"
    # records
    EDIT_NOT_FOUND = "edit_not_found"
    EDIT_ACTIVE = "edit_active"
    PREVIEW_NOT_FOUND = "preview_not_found"
    BATCH_NOT_FOUND = "batch_not_found"
    ASSET_NOT_FOUND = "asset_not_found"
    ASSET_NOT_UPLOADED = "asset_not_uploaded"
    EMOTION_NOT_FOUND = "emotion_not_found"
    EMOTION_EXISTS = "emotion_exists"
    BAD_EMOTION_NAME = "bad_emotion_name"
    DELIVERY_NOT_FOUND = "delivery_not_found"
    # URL inputs and webhooks
    URL_SCHEME = "url_scheme"
    URL_HOST = "url_host"
    URL_UNRESOLVABLE = "url_unresolvable"
    URL_PRIVATE_ADDRESS = "url_private_address"
    URL_TOO_MANY_REDIRECTS = "url_too_many_redirects"
    URL_FETCH_FAILED = "url_fetch_failed"
    URL_TOO_LARGE = "url_too_large"
    # our side
    TIMEOUT = "timeout"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    STORAGE = "storage"
    MODELS_UNAVAILABLE = "models_unavailable"
    LIPS_UNAVAILABLE = "lips_unavailable"
    CONNECTOR_MISSING = "connector_missing"
    QUALITY_UNAVAILABLE = "quality_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    QUEUE_UNAVAILABLE = "queue_unavailable"
    INTERNAL = "internal"

    @property
    def status(self) -> int:
        """The HTTP status of an answer with this code (a job's failure carries the code only)."""
        return _CATALOGUE[self][0]

    @property
    def meaning(self) -> str:
        return _CATALOGUE[self][1]

    @property
    def users_fault(self) -> bool:
        """Fix the input and try again (4xx), as opposed to a fault of ours or of the moment (5xx)."""
        return self.status < 500


_CATALOGUE: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.NOT_FOUND: (404, "no such file or path"),
    ErrorCode.NOT_MEDIA: (422, "the file is not audio or video that PyAV can read"),
    ErrorCode.NO_VIDEO_STREAM: (422, "the file has no video stream"),
    ErrorCode.ZERO_FRAMES: (422, "the video stream has no frames"),
    ErrorCode.TOO_LONG: (422, "the video is longer than the limit"),
    ErrorCode.TOO_MANY_FRAMES: (422, "the video has more frames than the limit"),
    ErrorCode.TOO_MANY_PIXELS: (422, "the video has more width x height x frame rate than the limit"),
    ErrorCode.DECODE_FAILED: (422, "the video or audio is corrupt or decodes inconsistently"),
    ErrorCode.NO_AUDIO: (422, "a speech clip, or a video whose voice an edit follows, has no audio track"),
    ErrorCode.EMPTY_AUDIO: (422, "the audio stream holds no samples"),
    ErrorCode.EMPTY_FILE: (422, "an uploaded part is empty"),
    ErrorCode.FILE_TOO_LARGE: (413, "an uploaded part or asset is over its size limit"),
    ErrorCode.SILENT_SPEECH: (422, "the speech track holds only silence"),
    ErrorCode.SPEECH_TOO_LONG: (422, "the speech track is longer than the limit"),
    ErrorCode.SPEECH_TOO_SHORT: (422, "the speech track is shorter than one output frame (40 ms)"),
    ErrorCode.BAD_PHOTO: (422, "the photo cannot be read or is over the pixel limit"),
    ErrorCode.NO_FACE: (422, "no face was found in enough frames"),
    ErrorCode.BAD_FACE_SELECTION: (422, "face_index, face_box or a `faces` entry's select matches no face"),
    ErrorCode.BAD_SOURCE_FRAME: (422, "source_frame is outside the clip or shows no face"),
    ErrorCode.FACE_SELECTED_TWICE: (422, "two `faces` entries select the same face (or two select the speaker)"),
    ErrorCode.TOO_MANY_FACES: (422, "`faces` has more entries than this deployment's limit (CMET_MAX_FACES)"),
    ErrorCode.SPEAKER_NEEDS_AUDIO: (422, "select: speaker needs a clip with an audio track"),
    ErrorCode.RESTORER_UNAVAILABLE: (422, "enhance is on, but the model set has no face restorer (use auto or off)"),
    ErrorCode.EYE_CONTROL_UNSUPPORTED: (
        422,
        "gaze or blink off or from a clip needs a backbone with its own eye codes (pdfgc); the model set's backbone "
        "has none",
    ),
    ErrorCode.BAD_UPSCALE: (422, "upscale 2 needs a 256x256 face-crop input and enhance auto or on"),
    ErrorCode.BAD_PREVIEW_FRAME: (422, "the contact sheet's frame is outside the clip"),
    ErrorCode.BAD_PREVIEW_WINDOW: (422, "the preview window holds no frame of the clip, or not its source_frame"),
    ErrorCode.UNKNOWN_EMOTION: (422, "the emotion is not in the library"),
    ErrorCode.BAD_EMOTION: (422, "the emotion or blend is malformed"),
    ErrorCode.BAD_SPEECH: (422, "speech clips cannot be embedded (too short, silent, unreadable)"),
    ErrorCode.BAD_LIBRARY: (422, "the emotion library file is unreadable or invalid"),
    ErrorCode.TIMELINE_BAD_TIMES: (
        422,
        "a timeline time is negative, a segment does not end after it starts, or its keyframes leave it",
    ),
    ErrorCode.TIMELINE_OVERLAP: (422, "two timeline segments overlap"),
    ErrorCode.TIMELINE_PAST_END: (422, "a timeline segment ends past the clip's end"),
    ErrorCode.TIMELINE_TOO_MANY_SEGMENTS: (422, "the timeline has more segments than the limit"),
    ErrorCode.INVALID_REQUEST: (422, "the request's fields fail validation"),
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: (415, "the body is not of a content type this endpoint takes"),
    ErrorCode.BODY_TOO_LARGE: (413, "the request body is over the limit"),
    ErrorCode.VIDEO_MISSING: (422, "no video was given"),
    ErrorCode.EMOTION_MISSING: (
        422,
        "no target was given (an emotion, speech clips, an expression reference or a timeline)",
    ),
    ErrorCode.SPEECH_MISSING: (422, "a custom emotion needs at least one speech clip"),
    ErrorCode.SPEECH_TRACK_MISSING: (422, "lips: speech needs a speech track"),
    ErrorCode.SPEECH_TRACK_UNUSED: (422, "a speech track (or pose video) was given without lips: speech"),
    ErrorCode.PHOTO_NEEDS_SPEECH: (422, "a photo input needs lips: speech and a speech track"),
    ErrorCode.POSE_VIDEO_NEEDS_PHOTO: (422, "pose_video is for a photo input; a video gives its own pose"),
    ErrorCode.EYE_VIDEO_MISSING: (422, "gaze or blink clip needs eye_video, the driving clip the eyes follow"),
    ErrorCode.EYE_VIDEO_UNUSED: (422, "eye_video is only read with gaze or blink clip"),
    ErrorCode.BAD_CURSOR: (422, "the list cursor is not one this API returned"),
    ErrorCode.OUTPUT_EXISTS: (409, "the CLI's output file exists (--force replaces it)"),
    ErrorCode.METHOD_NOT_ALLOWED: (405, "the path does not take this method (see Allow)"),
    ErrorCode.HTTP_ERROR: (400, "another HTTP-level error"),
    ErrorCode.UNAUTHORIZED: (401, "the API key is missing, unknown or revoked"),
    ErrorCode.BAD_SIGNATURE: (403, "a signed link is invalid or has expired"),
    ErrorCode.CONCURRENT_LIMIT: (429, "the key has its maximum of jobs queued or running"),
    ErrorCode.RATE_LIMIT: (429, "the key sent too many submissions, probes or uploads in the last minute"),
    ErrorCode.CONCURRENT_SUBMISSIONS: (429, "the key has its maximum of submissions being worked on at once"),
    ErrorCode.STREAM_LIMIT: (429, "the key has its maximum of event streams open"),
    ErrorCode.ASSET_LIMIT: (429, "the key holds its maximum of assets; delete one first"),
    ErrorCode.IDEMPOTENCY_KEY_REUSED: (422, "the Idempotency-Key was used with another request body"),
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: (409, "the first request with this Idempotency-Key is still being created"),
    ErrorCode.BATCH_TOO_LARGE: (422, "the batch has more edits than CMET_MAX_BATCH_EDITS, or than the key's limits"),
    ErrorCode.EDIT_NOT_FOUND: (404, "no such edit for this key"),
    ErrorCode.EDIT_ACTIVE: (409, "the edit is still queued or running"),
    ErrorCode.PREVIEW_NOT_FOUND: (404, "no such preview for this key"),
    ErrorCode.BATCH_NOT_FOUND: (404, "no such batch for this key"),
    ErrorCode.ASSET_NOT_FOUND: (404, "no such asset for this key"),
    ErrorCode.ASSET_NOT_UPLOADED: (422, "the asset's file was not uploaded yet"),
    ErrorCode.EMOTION_NOT_FOUND: (404, "no such custom emotion for this key"),
    ErrorCode.EMOTION_EXISTS: (409, "the key already has an emotion of this name"),
    ErrorCode.BAD_EMOTION_NAME: (422, "the emotion name is malformed or taken by a built-in one"),
    ErrorCode.DELIVERY_NOT_FOUND: (404, "no such webhook delivery for this edit"),
    ErrorCode.URL_SCHEME: (422, "the URL's scheme is not allowed"),
    ErrorCode.URL_HOST: (422, "the URL has no valid host, or carries credentials"),
    ErrorCode.URL_UNRESOLVABLE: (422, "the URL's host does not resolve"),
    ErrorCode.URL_PRIVATE_ADDRESS: (422, "the URL leads to a private, loopback or metadata address"),
    ErrorCode.URL_TOO_MANY_REDIRECTS: (422, "the URL redirects too often"),
    ErrorCode.URL_FETCH_FAILED: (422, "fetching the URL failed or it answered an error"),
    ErrorCode.URL_TOO_LARGE: (413, "the file at the URL is over the size limit"),
    ErrorCode.TIMEOUT: (504, "the edit ran past its time limit"),
    ErrorCode.TOO_MANY_ATTEMPTS: (500, "the job was started too often without finishing"),
    ErrorCode.STORAGE: (503, "the object store failed after retries"),
    ErrorCode.MODELS_UNAVAILABLE: (503, "the model set cannot be read"),
    ErrorCode.LIPS_UNAVAILABLE: (503, "the model set has no Audio2Lip, so this deployment cannot dub"),
    ErrorCode.CONNECTOR_MISSING: (
        422,
        "the target needs a C-MET connector and the model set has none for its backbone: `cmet-train` trains one "
        "(prep-visual, train, export) and `--connector` serves it; an expression reference needs none",
    ),
    ErrorCode.QUALITY_UNAVAILABLE: (
        503,
        "the quality models (the `quality` extra) are not installed: no quality report (the edit still runs)",
    ),
    ErrorCode.DATABASE_UNAVAILABLE: (503, "the job database cannot be reached; retry after Retry-After seconds"),
    ErrorCode.QUEUE_UNAVAILABLE: (503, "the job queue (broker) cannot be reached; retry after Retry-After seconds"),
    ErrorCode.INTERNAL: (500, "an unexpected fault of ours (logged)"),
}


class InputError(ValueError):
    """A user's input that cannot be edited; `code` is machine-readable, the message says what to change."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def catalogue_table() -> str:
    """The catalogue as a Markdown table (README and OpenAPI show this, so they list every code)."""
    rows = [f"| `{code.value}` | {code.status} | {code.meaning} |" for code in ErrorCode]
    return "\n".join(["| code | HTTP status | meaning |", "|---|---|---|", *rows])


ErrorCode.__doc__ = "Every machine-readable error code, its HTTP status and meaning:\n\n" + catalogue_table()

if __name__ == "__main__":
    print(catalogue_table())
