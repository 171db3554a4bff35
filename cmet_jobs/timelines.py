"""Timelines and `from_audio` at submission: their checks, their segments' files stored, how a job shows them.

A timeline is checked with `cmet_core`'s own rules (`Timeline.check`, with the clip's duration
when the video was uploaded; the worker checks URL and asset videos the same way) and each
segment's target like an edit's `emotion`, at the segment's peak intensity. Segment clips and
expression references come as assets or URLs and are stored under the job's prefix like the edit's own.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from cmet_core.emotion.voice import FROM_AUDIO
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.video import VideoInfo
from cmet_jobs import emotions, schemas, uploads
from cmet_jobs.db.models import ApiKey, Asset
from cmet_jobs.errors import RequestError
from cmet_jobs.inputs import check_emotion
from cmet_jobs.settings import JobsSettings
from cmet_jobs.spec import InputRef, SpecTimeline, StoredReference, StoredSpeech
from cmet_jobs.storage import Storage


def check_voice(body: schemas.EditCreate, video: VideoInfo | None) -> None:
    """`neutral` only goes with `from_audio`, whose uploaded video must have a voice to follow."""
    if body.neutral != "library" and body.emotion != FROM_AUDIO:
        raise RequestError(ErrorCode.INVALID_REQUEST, '`neutral` goes with `emotion: "from_audio"`')
    if body.emotion == FROM_AUDIO and video is not None and not video.has_audio:
        raise RequestError(ErrorCode.NO_AUDIO, "video: from_audio follows the video's voice, but it has no audio track")


def speech_urls(timeline: schemas.EditTimeline | None) -> list[str]:
    """Every URL of the timeline's speech targets (checked with the edit's other URLs)."""
    if timeline is None:
        return []
    return [u for s in timeline.segments if isinstance(s.target, schemas.SegmentSpeech) for u in s.target.speech_urls]


def reference_urls(timeline: schemas.EditTimeline | None) -> list[str]:
    """Every URL of the timeline's expression references (checked under the video size limit)."""
    targets = [s.target for s in timeline.segments] if timeline is not None else []
    return [
        t.expression_reference_url
        for t in targets
        if isinstance(t, schemas.SegmentReference)
        if t.expression_reference_url
    ]


def resolved(
    session: Session, key: ApiKey, body: schemas.EditCreate, settings: JobsSettings, video: VideoInfo | None
) -> schemas.EditTimeline:
    """The body's timeline checked, its custom emotion ids replaced by their names (as `emotion` is)."""
    timeline = body.timeline
    assert timeline is not None
    if body.intensity != 1.0:
        raise RequestError(ErrorCode.INVALID_REQUEST, "a timeline's segments carry their own intensity: no `intensity`")
    try:
        timeline.check(settings.max_timeline_segments, video.duration_s if video is not None else None)
    except InputError as exc:
        raise RequestError(exc.code, f"timeline: {exc}") from None
    library = emotions.library_for_key(session, key.id)
    segments = []
    for i, seg in enumerate(timeline.segments, start=1):  # the first is segment 1, as on the page
        target = seg.target
        if isinstance(target, str):
            if target == FROM_AUDIO:
                raise RequestError(ErrorCode.BAD_EMOTION, f"timeline segment {i}: from_audio cannot be a target")
            target = emotions.resolve_id(session, key.id, target)
            check_emotion(target, seg.peak_intensity, library)
        segments.append(seg.model_copy(update={"target": target}))
    return timeline.model_copy(update={"segments": tuple(segments)})


def assets(session: Session, storage: Storage, key: ApiKey, timeline: schemas.EditTimeline | None) -> dict[str, Asset]:
    """The segments' speech assets and expression references (kind `video`), each checked usable (owned,
    uploaded, in size, sniffed)."""
    targets = [s.target for s in timeline.segments] if timeline is not None else []
    ids = {a: "speech" for t in targets if isinstance(t, schemas.SegmentSpeech) for a in t.speech_assets}
    refs = [t.expression_reference_asset for t in targets if isinstance(t, schemas.SegmentReference)]
    ids |= {a: "video" for a in refs if a is not None}
    return {a: uploads.usable(session, storage, key, a, kind) for a, kind in ids.items()}


def stored(
    timeline: schemas.EditTimeline, found: dict[str, Asset], copy: Callable[[Asset, str, str], InputRef]
) -> SpecTimeline:
    """The job's timeline: each segment's assets copied (`copy(asset, name, kind)`), its URLs kept."""
    count = 0

    def store(target: schemas.SegmentSpeech | schemas.SegmentReference) -> StoredSpeech | StoredReference:
        nonlocal count
        count += 1
        if isinstance(target, schemas.SegmentReference):
            asset, url = target.expression_reference_asset, target.expression_reference_url
            ref = copy(found[asset], f"segment{count}-reference", "video") if asset else InputRef(url=url)
            return StoredReference(expression_reference=ref)
        refs = [copy(found[a], f"segment{count}-speech{i}", "speech") for i, a in enumerate(target.speech_assets)]
        return StoredSpeech(speech=(*refs, *(InputRef(url=u) for u in target.speech_urls)))

    spec = timeline.retarget(SpecTimeline, store)
    assert isinstance(spec, SpecTimeline)
    return spec


def shown(timeline: SpecTimeline | None) -> schemas.AppliedTimeline | None:
    """A job's timeline as its API record shows it (speech targets as their clip counts)."""
    if timeline is None:
        return None

    def show(target: StoredSpeech | StoredReference) -> schemas.ShownSpeech | schemas.ShownReference:
        if isinstance(target, StoredReference):
            return schemas.ShownReference()
        return schemas.ShownSpeech(speech_clips=len(target.speech))

    applied = timeline.retarget(schemas.AppliedTimeline, show)
    assert isinstance(applied, schemas.AppliedTimeline)
    return applied
