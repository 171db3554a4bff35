"""Checking what clients send before a job exists: sizes, sniffed content (never the file name), emotions.

Videos are probed with PyAV (cmet_core.media, which needs no torch), so a corrupt or non-video
upload is a 422 with the pipeline's own code instead of a job that fails later.
"""

from __future__ import annotations

from pathlib import Path

import av

from cmet_core.emotion.library import EmotionLibrary, UnknownEmotionError, resolve
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.mel import FPS as LIP_FPS
from cmet_core.media.photo import looks_like_photo, photo_size
from cmet_core.media.speech_track import check_track
from cmet_core.media.video import VideoInfo
from cmet_core.options import EditChoices, Limits, probe_input, probe_reference
from cmet_jobs.errors import RequestError


def _refused(exc: InputError, part: str, path: Path) -> RequestError:
    return RequestError(exc.code, f"{part}: {exc}".replace(str(path), "the uploaded file"))


def check_video(path: Path, choices: EditChoices, limits: Limits, part: str = "video") -> VideoInfo:
    """The clip's probe, or a 422 naming what is wrong with it, which limit it passes, or that
    `source_frame` lies past its end (the worker checks URL and asset inputs the same way)."""
    try:
        return probe_input(path, choices, limits)
    except InputError as exc:
        raise _refused(exc, part, path) from None


def check_photo(path: Path, limits: Limits) -> None:
    """A photo to animate: readable, and within the pixel rate the dub's 25 fps output will have."""
    try:
        photo_size(path, limits.max_pixels_per_second / LIP_FPS)
    except InputError as exc:
        raise _refused(exc, "video", path) from None


def check_reference(path: Path, limits: Limits) -> None:
    """An expression reference: a photo PIL reads, or a clip PyAV reads, within the limits (its face is looked
    for by the worker, which fails the job with `no_face` when no frame shows one)."""
    try:
        probe_reference(path, limits)
    except InputError as exc:
        raise _refused(exc, "expression_reference", path) from None


def check_speech_track(path: Path, max_seconds: float) -> None:
    """A dub's speech track: it has audio and is not over the limit (silence shows when it is decoded)."""
    try:
        check_track(path, max_seconds)
    except InputError as exc:
        raise _refused(exc, "speech_track", path) from None


def check_speech(path: Path) -> None:
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise RequestError(ErrorCode.NO_AUDIO, "speech: the uploaded file has no audio track")
    except (av.error.FFmpegError, UnicodeDecodeError):
        raise RequestError(ErrorCode.NOT_MEDIA, "speech: the uploaded file is not audio PyAV can read") from None


SNIFF_BYTES = 512


def _container(head: bytes) -> str | None:
    """The container a file's first bytes announce, or None for anything that is not media."""
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"WAVE"):
        return "avi" if head[8:12] == b"AVI " else "wav"
    if head.startswith(b"FLV"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head.startswith(b"\x00\x00\x01\xba") or (
        len(head) > 188 and head[0] == head[188] == 0x47
    ):  # PS pack, TS sync bytes
        return "mpeg"
    return None


def _is_image(head: bytes) -> bool:
    """A photo to animate: what `is_photo` takes as a part (any image PIL reads: JPEG, PNG, WebP, GIF,
    TIFF, ...), from the first bytes; a JPEG whose header runs past them (a large EXIF block) by its
    signature."""
    return head.startswith(b"\xff\xd8\xff") or looks_like_photo(head)


def sniff_asset(head: bytes, kind: str, name: str) -> None:
    """An uploaded asset's first bytes must announce a media container of its kind (a full probe
    needs the whole file, which the worker has; this catches text, images and archives at once)."""
    container = _container(head)
    audio_only = {"wav", "flac", "mp3"}
    if container is None and kind == "video" and _is_image(head):
        return  # a photo to animate
    if container is None or (kind == "video" and container in audio_only):
        raise RequestError(
            ErrorCode.NOT_MEDIA, f"{name} does not look like {'a video' if kind == 'video' else 'an audio'} file"
        )


def check_emotion(spec: str, intensity: float, library: EmotionLibrary) -> None:
    try:
        resolve(spec, library, intensity)
    except UnknownEmotionError as exc:
        raise RequestError(ErrorCode.UNKNOWN_EMOTION, str(exc)) from None
    except ValueError as exc:
        raise RequestError(ErrorCode.BAD_EMOTION, str(exc)) from None
