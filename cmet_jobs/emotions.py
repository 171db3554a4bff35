"""The emotions a key can name: the 14 built-in ones plus the key's own, as one library; and
registering and forgetting a key's own (the API's `/v1/emotions`, without HTTP).

The API validates edit requests against the library and the worker resolves them with it, so a
custom emotion is usable in names and blends exactly like a built-in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cmet_core.emotion.library import EMOTION_NAME, EmotionEntry, EmotionLibrary, load_builtin_library
from cmet_core.emotion.voice import FROM_AUDIO
from cmet_core.errors import ErrorCode
from cmet_jobs import queue, quota
from cmet_jobs.db.models import ApiKey, CustomEmotion
from cmet_jobs.errors import RequestError
from cmet_jobs.inputs import check_speech
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import EmotionState
from cmet_jobs.storage import Storage

NAME = EMOTION_NAME

BUILD = "cmet.build_emotion"


def library_for_key(session: Session, key_id: str) -> EmotionLibrary:
    library = load_builtin_library()
    for row in session.scalars(
        select(CustomEmotion).where(CustomEmotion.key_id == key_id, CustomEmotion.state == EmotionState.READY)
    ):
        if row.entry is not None:
            library.add(EmotionEntry.model_validate(row.entry))
    return library


def resolve_id(session: Session, key_id: str, spec: str) -> str:
    """A request may name a custom emotion by its id (`emo_...`); blends use names."""
    if spec.startswith("emo_"):
        row = session.get(CustomEmotion, spec)
        if row is not None and row.key_id == key_id:
            return row.name
    return spec


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RequestError(
            ErrorCode.BAD_EMOTION_NAME,
            "`name` must be lower-case letters, digits, '_' or '-', starting with a letter (at most 64)",
        )
    if name in load_builtin_library():
        raise RequestError(ErrorCode.BAD_EMOTION_NAME, f"{name!r} is a built-in emotion")
    if name == FROM_AUDIO:
        raise RequestError(ErrorCode.BAD_EMOTION_NAME, f"{name!r} is reserved: it makes an edit follow the voice")
    return name


def register(
    session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, name: str, clips: Sequence[Path]
) -> CustomEmotion:
    """A `pending` emotion whose clips wait in storage for a worker to embed them."""
    name = check_name(name)
    if not clips:
        raise RequestError(ErrorCode.SPEECH_MISSING, "give at least one `speech` part")
    quota.check(session, key, take=False)
    for path in clips:
        check_speech(path)
    quota.check(session, key)  # a build is a job on the edit queue: it counts as one
    row = CustomEmotion(key_id=key.id, name=name)
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        raise RequestError(ErrorCode.EMOTION_EXISTS, f"this key already has an emotion named {name!r}") from None
    keys = [f"emotions/{row.id}/{path.name}" for path in clips]
    for path, storage_key in zip(clips, keys, strict=True):
        storage.put_file(storage_key, path, "application/octet-stream")
    row.clips = {"keys": keys}
    session.commit()
    queue.send(settings, BUILD, row.id)
    return row


def own(session: Session, key: ApiKey) -> list[CustomEmotion]:
    return list(
        session.scalars(select(CustomEmotion).where(CustomEmotion.key_id == key.id).order_by(CustomEmotion.name))
    )


def forget(session: Session, storage: Storage, key: ApiKey, emotion_id: str) -> None:
    """Edits still queued with it then fail with `unknown_emotion`."""
    row = session.get(CustomEmotion, emotion_id)
    if row is None or row.key_id != key.id:
        raise RequestError(ErrorCode.EMOTION_NOT_FOUND, f"no emotion {emotion_id}")
    storage.delete_prefix(f"emotions/{row.id}/")
    session.delete(row)
    session.commit()
