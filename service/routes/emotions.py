"""`/v1/emotions`: the built-in emotions and a key's own, registered from its speech clips."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cmet_core.emotions import load_builtin_library
from cmet_jobs import queue, schemas
from cmet_jobs.db.models import CustomEmotion
from service.deps import KeyDep, SessionDep, SettingsDep, StorageDep
from cmet_jobs.emotions import BUILD
from cmet_jobs.inputs import check_speech
from service.inputs import save_upload
from cmet_jobs.errors import ProblemError

router = APIRouter(prefix="/v1/emotions", tags=["emotions"])
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "speech"],
                    "properties": {
                        "name": {"type": "string", "pattern": _NAME.pattern},
                        "speech": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1, "maxItems": schemas.MAX_SPEECH},
                    },
                }
            }
        },
    }
}


def _custom(row: CustomEmotion) -> schemas.Emotion:
    error = schemas.JobError(code=row.error_code, message=row.error_message or "") if row.error_code else None
    return schemas.Emotion(id=row.id, name=row.name, kind="custom", state=row.state, error=error)  # type: ignore[arg-type]


@router.get("", response_model=schemas.EmotionList)
def list_emotions(key: KeyDep, session: SessionDep) -> schemas.EmotionList:
    """The 14 built-in emotions and this key's own."""
    data = [schemas.Emotion(id=e.name, name=e.name, kind=e.kind.value, state="ready") for e in load_builtin_library().emotions]  # type: ignore[arg-type]
    own = session.scalars(select(CustomEmotion).where(CustomEmotion.key_id == key.id).order_by(CustomEmotion.name))
    return schemas.EmotionList(data=data + [_custom(row) for row in own])


@router.post("", status_code=202, response_model=schemas.Emotion, openapi_extra=_BODY_DOC)
async def create_emotion(request: Request, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep) -> schemas.Emotion:
    """Register a named emotion from speech clips (multipart: `name`, `speech` parts). A worker embeds
    them; the emotion is usable once its state is `ready`, by name or id, alone or in blends."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise ProblemError(415, "unsupported_media_type", "send multipart/form-data with `name` and `speech` parts")
    try:
        form = await request.form(max_files=schemas.MAX_SPEECH, max_fields=4)
    except HTTPException as exc:
        raise ProblemError(422, "invalid_request", str(exc.detail)) from None
    name = form.get("name")
    clips = [v for k, v in form.multi_items() if k == "speech" and isinstance(v, UploadFile)]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ProblemError(422, "bad_emotion_name", "`name` must be lower-case letters, digits, '_' or '-', starting with a letter (at most 64)")
    if name in load_builtin_library():
        raise ProblemError(422, "bad_emotion_name", f"{name!r} is a built-in emotion")
    if not clips:
        raise ProblemError(422, "speech_missing", "give at least one `speech` part")
    row = CustomEmotion(key_id=key.id, name=name)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise ProblemError(409, "emotion_exists", f"this key already has an emotion named {name!r}") from None
    with tempfile.TemporaryDirectory(prefix="cmet-emo-") as scratch:
        paths = [save_upload(clip, Path(scratch), f"speech{i}", settings.max_speech_bytes) for i, clip in enumerate(clips)]
        for path in paths:
            check_speech(path)
        keys = [f"emotions/{row.id}/{path.name}" for path in paths]
        for path, storage_key in zip(paths, keys):
            storage.put_file(storage_key, path, "application/octet-stream")
    row.clips = {"keys": keys}
    session.commit()
    queue.send(settings, BUILD, row.id)
    return _custom(row)


@router.delete("/{emotion_id}", status_code=204)
def delete_emotion(emotion_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> Response:
    """Forget one of this key's emotions (edits still queued with it then fail with `unknown_emotion`)."""
    row = session.get(CustomEmotion, emotion_id)
    if row is None or row.key_id != key.id:
        raise ProblemError(404, "emotion_not_found", f"no emotion {emotion_id}")
    storage.delete_prefix(f"emotions/{row.id}/")
    session.delete(row)
    return Response(status_code=204)
