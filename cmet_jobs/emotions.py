"""The emotions a key can name: the 14 built-in ones plus the key's own, as one library.

The API validates edit requests against it and the worker resolves them with it, so a custom
emotion is usable in names and blends exactly like a built-in one.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cmet_core.emotions import EmotionEntry, EmotionLibrary, load_builtin_library
from cmet_jobs.db.models import CustomEmotion

BUILD = "cmet.build_emotion"


def library_for_key(session: Session, key_id: str) -> EmotionLibrary:
    library = load_builtin_library()
    for row in session.scalars(select(CustomEmotion).where(CustomEmotion.key_id == key_id, CustomEmotion.state == "ready")):
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
