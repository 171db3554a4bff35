"""Assets: files a client uploads once (a presigned PUT) and names in edits by id (`/v1/uploads`, without HTTP).

The client says the file's size when it asks for the URL, and the URL is signed for exactly that size
(S3: a signed `Content-Length`; the local backend: its own signature and a count on receipt), so an
upload cannot go over its asset's limit where the store checks signatures. The size is still checked
before every use and stray or oversized files are swept (`sweep_strays`): S3-compatible servers that
do not check the signed length (moto, which the tests run) let a larger PUT through.

An asset is read live only while a submission checks it: the job then copies it under its own
prefix (`snapshot`) and runs on the copy, so a later PUT to the same URL, or deleting the asset,
cannot change an edit already accepted. The copy is the one way that holds for both backends:
S3 accepts a presigned PUT without asking the API, so a "frozen" asset could not refuse it.

An asset lives until its key deletes it or until it has gone unused by new edits for
`asset_retention_s`; the workers' sweeper (`sweep_expired`) deletes those.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete as delete_rows
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_jobs import paging, quota, schemas
from cmet_jobs.db.models import ApiKey, Asset, now
from cmet_jobs.errors import RequestError
from cmet_jobs.inputs import SNIFF_BYTES, sniff_asset
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import Work
from cmet_jobs.storage import Storage, StorageError

SWEEP_BATCH = 500
ASSETS_PREFIX = "assets/"


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
    size: int,
    filename: str,
    content_type: str,
) -> NewUpload:
    """An asset record and the URL to PUT its file of `size` bytes to (at most its kind's limit). A key holds
    at most `max_assets_per_key` assets and creates at most `uploads_per_minute` a minute."""
    limit = settings.max_video_bytes if kind == "video" else settings.max_speech_bytes
    if size > limit:
        raise RequestError(ErrorCode.FILE_TOO_LARGE, f"a {kind} may have {limit} bytes; this one has {size}")
    max_bytes = size
    quota.lock_key(session, key)
    held = session.scalar(select(func.count()).select_from(Asset).where(Asset.key_id == key.id)) or 0
    if held >= settings.max_assets_per_key:
        raise RequestError(
            ErrorCode.ASSET_LIMIT, f"this key holds {held} assets, its maximum; delete one (DELETE /v1/uploads/{{id}})"
        )
    quota.check_rate(session, key, Work.UPLOAD, settings.uploads_per_minute)
    asset = Asset(key_id=key.id, storage_key="", filename=filename, declared_type=content_type, max_bytes=max_bytes)
    session.add(asset)
    session.flush()
    asset.storage_key = f"{ASSETS_PREFIX}{key.id}/{asset.id}"
    url, headers = storage.upload_url(asset.storage_key, max_bytes)
    session.commit()  # before the answer: the client PUTs to the URL at once
    return NewUpload(asset, url, headers, max_bytes)


def shown(asset: Asset) -> str:
    """How a message names an asset: the file name its uploader gave (what a person knows), else its id."""
    return f"the file {asset.filename!r}" if asset.filename else f"asset {asset.id}"


def owned(session: Session, key: ApiKey, asset_id: str) -> Asset:
    """The caller's asset, else 404 (another key's id looks exactly like a missing one)."""
    asset = session.get(Asset, asset_id)
    if asset is None or asset.key_id != key.id:
        raise RequestError(ErrorCode.ASSET_NOT_FOUND, f"no asset {asset_id}")
    return asset


def check_stored(storage: Storage, storage_key: str, asset: Asset, kind: str) -> None:
    """The object at `storage_key` (the asset or a job's copy of it) is there, in size and of its kind."""
    size = storage.size(storage_key)
    if size is None:
        raise RequestError(ErrorCode.ASSET_NOT_UPLOADED, f"{shown(asset)} was not uploaded yet")
    if size > asset.max_bytes:
        raise RequestError(ErrorCode.FILE_TOO_LARGE, f"{shown(asset)} is {size} bytes; the limit is {asset.max_bytes}")
    sniff_asset(storage.head(storage_key, SNIFF_BYTES), kind, shown(asset))


def usable(session: Session, storage: Storage, key: ApiKey, asset_id: str, kind: str) -> Asset:
    """An asset a submission may name: the caller's, uploaded, in size, sniffed. Marked used (its
    retention starts again) with the submission's next commit."""
    asset = owned(session, key, asset_id)
    check_stored(storage, asset.storage_key, asset, kind)
    session.execute(update(Asset).where(Asset.id == asset.id).values(last_used_at=now()))
    return asset


def snapshot(storage: Storage, asset: Asset, target: str, kind: str) -> None:
    """The asset as it is now, copied to `target` in a job's prefix and checked again there: a PUT
    that replaced the file after `usable` checked it cannot slip past the checks."""
    try:
        storage.copy(asset.storage_key, target)
    except StorageError:
        if storage.size(asset.storage_key) is not None:
            raise
        raise RequestError(ErrorCode.ASSET_NOT_FOUND, f"{shown(asset)} was deleted during the submission") from None
    check_stored(storage, target, asset, kind)


def expires_at(asset: Asset, retention_s: int) -> datetime:
    return (asset.last_used_at or asset.created_at) + timedelta(seconds=retention_s)


def to_schema(asset: Asset, storage: Storage, settings: JobsSettings) -> schemas.Asset:
    size = storage.size(asset.storage_key)
    return schemas.Asset(
        id=asset.id,
        filename=asset.filename,
        content_type=asset.declared_type,
        max_bytes=asset.max_bytes,
        uploaded=size is not None,
        size=size,
        created_at=asset.created_at,
        last_used_at=asset.last_used_at,
        expires_at=expires_at(asset, settings.asset_retention_s),
    )


def list_page(session: Session, key: ApiKey, limit: int, cursor: str | None) -> tuple[list[Asset], str | None]:
    """One page of the key's assets, newest first, and the cursor of the next page (None at the end)."""
    query = select(Asset).where(Asset.key_id == key.id)
    return paging.page(session, query, (Asset.created_at, Asset.id), limit, cursor)


def delete(session: Session, storage: Storage, key: ApiKey, asset_id: str) -> None:
    """The asset's record and file; edits already accepted keep their own copies. The file goes first:
    a failure leaves the record, and deleting again finishes the job."""
    asset = owned(session, key, asset_id)
    storage.delete_prefix(asset.storage_key)
    session.delete(asset)
    session.commit()


def sweep_strays(session: Session, storage: Storage) -> int:
    """Delete the objects under `assets/` that break their record: those no asset record owns (a PUT to a
    deleted asset's URL, valid until it expires, recreates the file) and those over their asset's size
    limit (a presigned S3 PUT cannot carry one: the size is checked here and before every use). An
    asset's own files are `assets/<key>/<asset id>` and files beside it (`<asset id>.probe-<fingerprint>.json`)."""
    objects = [(key, key.rsplit("/", 1)[-1], size) for key, size in storage.listing(ASSETS_PREFIX)]
    owners = {name.split(".", 1)[0] for _, name, _ in objects}
    rows = session.execute(select(Asset.id, Asset.max_bytes).where(Asset.id.in_(owners)))
    limits = {asset_id: max_bytes for asset_id, max_bytes in rows}
    stray = [
        key
        for key, name, size in objects
        if name.split(".", 1)[0] not in limits or (name in limits and size > limits[name])
    ]
    for key in stray:
        storage.delete_prefix(key)
    return len(stray)


def sweep_expired(session: Session, storage: Storage, retention_s: int) -> int:
    """Delete (file, then record) up to SWEEP_BATCH assets no new edit used for `retention_s`."""
    cutoff = now() - timedelta(seconds=retention_s)
    expired = list(
        session.scalars(
            select(Asset).where(func.coalesce(Asset.last_used_at, Asset.created_at) < cutoff).limit(SWEEP_BATCH)
        )
    )
    for asset in expired:
        storage.delete_prefix(asset.storage_key)
    if expired:
        session.execute(delete_rows(Asset).where(Asset.id.in_([a.id for a in expired])))
        session.commit()
    return len(expired)
