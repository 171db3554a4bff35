"""`/v1/uploads` (presigned PUT for large inputs) and `/v1/files` (the local backend's signed URLs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, BinaryIO

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from cmet_core.errors import ErrorCode
from cmet_jobs import schemas, uploads
from cmet_jobs.db.models import Asset
from cmet_jobs.errors import RequestError
from cmet_jobs.storage import LocalStorage, verify
from service import offload
from service.deps import KeyDep, SessionDep, SettingsDep, StorageDep

router = APIRouter(tags=["uploads"])
WRITE_BYTES = 1 << 20  # an upload reaches the disk in pieces this big, each written on a submission thread


@router.post("/v1/uploads", status_code=201, response_model=schemas.Upload)
def create_upload(
    body: schemas.UploadCreate, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> schemas.Upload:
    """An asset id and a URL to PUT the file to (exactly `size` bytes); then pass the id as `video_asset` or in
    `speech_assets`."""
    new = uploads.new_upload(session, settings, storage, key, body.kind, body.size, body.filename, body.content_type)
    return schemas.Upload(
        id=new.asset.id, upload_url=new.url, headers=new.headers, max_bytes=new.max_bytes, expires_in=settings.url_ttl_s
    )


@router.get("/v1/uploads", response_model=schemas.AssetList)
def list_uploads(
    key: KeyDep,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> schemas.AssetList:
    """This key's assets, newest first, with their size; pass `next_cursor` back as `cursor` for the next page."""
    page, next_cursor = uploads.list_page(session, key, limit, cursor)
    return schemas.AssetList(data=[uploads.to_schema(a, storage, settings) for a in page], next_cursor=next_cursor)


@router.get("/v1/uploads/{asset_id}", response_model=schemas.Asset)
def get_upload(
    asset_id: str, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> schemas.Asset:
    """The asset: whether its file was uploaded, its size, when it expires."""
    return uploads.to_schema(uploads.owned(session, key, asset_id), storage, settings)


@router.delete("/v1/uploads/{asset_id}", status_code=204)
def delete_upload(asset_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> Response:
    """Deletes the asset's record and file; edits already accepted with it keep their own copies."""
    uploads.delete(session, storage, key, asset_id)
    return Response(status_code=204)


def _local(storage: StorageDep) -> LocalStorage:
    if not isinstance(storage, LocalStorage):
        raise RequestError(ErrorCode.NOT_FOUND, "files are served by the object store in this deployment")
    return storage


@router.get("/v1/files/{key:path}", include_in_schema=False)
def download(
    key: str, storage: StorageDep, expires: Annotated[int, Query()], signature: Annotated[str, Query(max_length=128)]
) -> FileResponse:
    local = _local(storage)
    if not verify(local.secret, "GET", key, expires, signature):
        raise RequestError(ErrorCode.BAD_SIGNATURE, "the link is invalid or has expired")
    path = local.path(key)
    if not path.is_file():
        raise RequestError(ErrorCode.NOT_FOUND, "no such file")
    return FileResponse(path, media_type="video/mp4" if key.endswith(".mp4") else "application/octet-stream")


def _receiving(session: Session, local: LocalStorage, key: str, expires: int, signature: str, size: int) -> BinaryIO:
    """The `.partial` file of the asset a signed PUT of `size` bytes is for, opened for writing."""
    if not verify(local.secret, "PUT", key, expires, signature, size):
        raise RequestError(ErrorCode.BAD_SIGNATURE, "the link is invalid or has expired")
    asset = session.get(Asset, key.rsplit("/", 1)[-1])
    if asset is None or asset.storage_key != key:
        raise RequestError(ErrorCode.NOT_FOUND, "no such upload")
    session.close()  # the upload may take minutes: it holds no pooled connection meanwhile
    partial = _partial(local, key)
    partial.parent.mkdir(parents=True, exist_ok=True)
    return partial.open("wb")


def _partial(local: LocalStorage, key: str) -> Path:
    target = local.path(key)
    return target.with_name(target.name + ".partial")


def _received(out: BinaryIO, rest: bytes, local: LocalStorage, key: str) -> None:
    with out:
        out.write(rest)
    _partial(local, key).replace(local.path(key))


def _abandoned(out: BinaryIO, local: LocalStorage, key: str) -> None:
    out.close()
    _partial(local, key).unlink(missing_ok=True)


@router.put("/v1/files/{key:path}", include_in_schema=False)
async def upload(
    key: str,
    request: Request,
    storage: StorageDep,
    session: SessionDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
    size: Annotated[int, Query(ge=1)],
) -> Response:
    """The local backend's presigned PUT of exactly `size` bytes (signed): streamed to a `.partial` file,
    renamed when complete. The database and the disk are used on the submission threads, never on the
    event loop."""
    local = _local(storage)
    out = await offload.heavy(request, _receiving, session, local, key, expires, signature, size)
    written, pending = 0, bytearray()
    try:
        async for chunk in request.stream():
            written += len(chunk)
            if written > size:
                raise RequestError(ErrorCode.FILE_TOO_LARGE, f"this upload was signed for {size} bytes")
            pending += chunk
            if len(pending) >= WRITE_BYTES:
                data, pending = bytes(pending), bytearray()
                await offload.heavy(request, out.write, data)
        if written != size:
            raise RequestError(ErrorCode.INVALID_REQUEST, f"this upload was signed for {size} bytes; {written} came")
        await offload.heavy(request, _received, out, bytes(pending), local, key)
    except BaseException:
        with anyio.CancelScope(shield=True):  # also when the client went away and the request is cancelled
            await offload.heavy(request, _abandoned, out, local, key)
        raise
    return Response(status_code=200)
