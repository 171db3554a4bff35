"""Assets: files a client uploads once (a presigned PUT) and names in edits by id (`/v1/uploads`, without HTTP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from cmet_jobs.db.models import ApiKey, Asset
from cmet_jobs.settings import JobsSettings
from cmet_jobs.storage import Storage


@dataclass(frozen=True)
class NewUpload:
    asset: Asset
    url: str
    headers: dict[str, str]
    max_bytes: int


def new_upload(
    session: Session,
    settings: JobsSettings,
    storage: Storage,
    key: ApiKey,
    kind: Literal["video", "speech"],
    filename: str,
    content_type: str,
) -> NewUpload:
    """An asset record and the URL to PUT its file to, limited to the size of its kind."""
    max_bytes = settings.max_video_bytes if kind == "video" else settings.max_speech_bytes
    asset = Asset(key_id=key.id, storage_key="", filename=filename, declared_type=content_type, max_bytes=max_bytes)
    session.add(asset)
    session.flush()
    asset.storage_key = f"assets/{key.id}/{asset.id}"
    url, headers = storage.upload_url(asset.storage_key, max_bytes)
    session.commit()  # before the answer: the client PUTs to the URL at once
    return NewUpload(asset, url, headers, max_bytes)
