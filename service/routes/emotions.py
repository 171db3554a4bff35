"""`/v1/emotions`: the built-in emotions and a key's own, registered from its speech clips."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cmet_core.emotion.library import load_builtin_library
from cmet_core.emotion.targets import MAX_SPEECH_CLIPS
from cmet_core.errors import ErrorCode
from cmet_jobs import emotions, schemas
from cmet_jobs.db.models import ApiKey, CustomEmotion
from cmet_jobs.errors import RequestError
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import EmotionState
from cmet_jobs.storage import Storage
from service import offload
from service.deps import KeyDep, SessionDep, SettingsDep, StorageDep
from service.inputs import save_upload, scratch_prefix

router = APIRouter(prefix="/v1/emotions", tags=["emotions"])
_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "speech"],
                    "properties": {
                        "name": {"type": "string", "pattern": emotions.NAME.pattern},
                        "speech": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "maxItems": MAX_SPEECH_CLIPS,
                        },
                    },
                }
            }
        },
    }
}


def _custom(row: CustomEmotion) -> schemas.Emotion:
    error = schemas.job_error(row.error_code, row.error_message)
    return schemas.Emotion(id=row.id, name=row.name, kind="custom", state=row.state, error=error)


@router.get("", response_model=schemas.EmotionList)
def list_emotions(key: KeyDep, session: SessionDep) -> schemas.EmotionList:
    """The 14 built-in emotions and this key's own."""
    data = [
        schemas.Emotion(id=e.name, name=e.name, kind=e.kind.value, state=EmotionState.READY)
        for e in load_builtin_library().emotions
    ]
    return schemas.EmotionList(data=data + [_custom(row) for row in emotions.own(session, key)])


@router.post("", status_code=202, response_model=schemas.Emotion, openapi_extra=_BODY_DOC)
async def create_emotion(
    request: Request, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> schemas.Emotion:
    """Register a named emotion from speech clips (multipart: `name`, `speech` parts). A worker embeds
    them; the emotion is usable once its state is `ready`, by name or id, alone or in blends."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "multipart/form-data":
        raise RequestError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send multipart/form-data with `name` and `speech` parts")
    try:
        form = await request.form(max_files=MAX_SPEECH_CLIPS, max_fields=4)
    except HTTPException as exc:
        raise RequestError(ErrorCode.INVALID_REQUEST, str(exc.detail)) from None
    name = emotions.check_name(form.get("name"))
    clips = [v for k, v in form.multi_items() if k == "speech" and isinstance(v, UploadFile)]
    return _custom(await offload.submission(request, key.id, _register, session, settings, storage, key, name, clips))


def _register(
    session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, name: str, clips: list[UploadFile]
) -> CustomEmotion:
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("emo")) as scratch:
        paths = [save_upload(c, Path(scratch), f"speech{i}", settings.max_speech_bytes) for i, c in enumerate(clips)]
        return emotions.register(session, settings, storage, key, name, paths)


@router.delete("/{emotion_id}", status_code=204)
def delete_emotion(emotion_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> Response:
    """Forget one of this key's emotions (edits still queued with it then fail with `unknown_emotion`)."""
    emotions.forget(session, storage, key, emotion_id)
    return Response(status_code=204)
