"""`/v1/uploads` (presigned PUT for large inputs) and `/v1/files` (the local backend's signed URLs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from cmet_jobs import schemas
from cmet_jobs.db.models import Asset
from service.deps import KeyDep, SessionDep, SettingsDep, StorageDep
from cmet_jobs.errors import ProblemError
from cmet_jobs.storage import LocalStorage, verify

router = APIRouter(tags=["uploads"])


@router.post("/v1/uploads", status_code=201, response_model=schemas.Upload)
def create_upload(body: schemas.UploadCreate, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep) -> schemas.Upload:
    """An asset id and a URL to PUT the file to; then pass the id as `video_asset` or in `speech_assets`."""
    max_bytes = settings.max_video_bytes if body.kind == "video" else settings.max_speech_bytes
    asset = Asset(key_id=key.id, storage_key="", filename=body.filename, declared_type=body.content_type, max_bytes=max_bytes)
    session.add(asset)
    session.flush()
    asset.storage_key = f"assets/{key.id}/{asset.id}"
    url, headers = storage.upload_url(asset.storage_key, max_bytes)
    return schemas.Upload(id=asset.id, upload_url=url, headers=headers, max_bytes=max_bytes, expires_in=settings.url_ttl_s)


def _local(storage: StorageDep) -> LocalStorage:
    if not isinstance(storage, LocalStorage):
        raise ProblemError(404, "not_found", "files are served by the object store in this deployment")
    return storage


@router.get("/v1/files/{key:path}", include_in_schema=False)
def download(key: str, storage: StorageDep, expires: Annotated[int, Query()], signature: Annotated[str, Query(max_length=128)]) -> FileResponse:
    local = _local(storage)
    if not verify(local.secret, "GET", key, expires, signature):
        raise ProblemError(403, "bad_signature", "the link is invalid or has expired")
    path = local.path(key)
    if not path.is_file():
        raise ProblemError(404, "not_found", "no such file")
    return FileResponse(path, media_type="video/mp4" if key.endswith(".mp4") else "application/octet-stream")


@router.put("/v1/files/{key:path}", include_in_schema=False)
async def upload(key: str, request: Request, storage: StorageDep, session: SessionDep, expires: Annotated[int, Query()], signature: Annotated[str, Query(max_length=128)]) -> Response:
    local = _local(storage)
    if not verify(local.secret, "PUT", key, expires, signature):
        raise ProblemError(403, "bad_signature", "the link is invalid or has expired")
    asset = session.get(Asset, key.rsplit("/", 1)[-1])
    if asset is None or asset.storage_key != key:
        raise ProblemError(404, "not_found", "no such upload")
    target = local.path(key)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    written = 0
    with partial.open("wb") as out:
        async for chunk in request.stream():
            written += len(chunk)
            if written > asset.max_bytes:
                out.close()
                partial.unlink(missing_ok=True)
                raise ProblemError(413, "file_too_large", f"the limit for this upload is {asset.max_bytes} bytes")
            out.write(chunk)
    partial.replace(target)
    return Response(status_code=200)
