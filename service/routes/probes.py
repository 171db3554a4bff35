"""`/v1/uploads/{id}/probe`: an uploaded video's length, fps, size and face before an edit (`cmet_jobs.probes`)."""

from __future__ import annotations

from fastapi import APIRouter

from cmet_jobs import probes, schemas
from service.deps import KeyDep, SessionDep, SettingsDep, StorageDep

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post("/{asset_id}/probe", status_code=202, response_model=schemas.Probe)
def probe_upload(
    asset_id: str, key: KeyDep, session: SessionDep, settings: SettingsDep, storage: StorageDep
) -> schemas.Probe:
    """Ask a worker to measure an uploaded video and find its face; read the answer with GET."""
    return probes.request(session, settings, storage, key, asset_id)


@router.get("/{asset_id}/probe", response_model=schemas.Probe)
def get_probe(asset_id: str, key: KeyDep, session: SessionDep, storage: StorageDep) -> schemas.Probe:
    """`pending` until the worker answered; then `ready` (length, fps, size, face box) or `failed` with the code
    an edit of this video would fail with."""
    return probes.read(session, storage, key, asset_id)
