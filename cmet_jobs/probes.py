"""Probing an uploaded video before an edit: length, fps, size and the face the edit would take.

A client (the web page) shows these next to the file, with the same error codes an edit of it
would end with, before anything is submitted. Face detection runs a model (MediaPipe), which the
API never does (its image has none), so the API queues `PROBE` for an edit worker by asset id, on
the preview queue that every worker takes from first (a probe is seconds of work, like a
preview); the worker stores the answer as JSON beside the asset in storage (`result_key`, under
the asset's own key, so deleting or expiring the asset removes it too, and named for the file it
measured, so a new PUT to the asset never shows the old file's answer), and
`GET /v1/uploads/{id}/probe` reads it back: `pending` until it is there. No table is needed:
the answer is a cache of a pure function of the file, and asking again recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.orm import Session

from cmet_core import faces
from cmet_core.errors import ErrorCode, InputError
from cmet_core.media.video import read_frames
from cmet_core.options import EditChoices, Limits, probe_input
from cmet_jobs import queue, quota, schemas, uploads
from cmet_jobs.db.models import ApiKey, Asset
from cmet_jobs.db.session import session_scope
from cmet_jobs.settings import JobsSettings
from cmet_jobs.states import Work
from cmet_jobs.storage import Storage

PROBE = "cmet.probe_asset"
PROBE_FRAMES = 12
"""Frames searched for the face at the start of the clip: enough for the tracker to confirm one."""
MAX_ANSWER_BYTES = 16_384


FINGERPRINT_BYTES = 65_536


def result_key(asset: Asset, fingerprint: str = "") -> str:
    """Where the answer for the file whose `fingerprint` it is lies; without one, the prefix of all answers."""
    return f"{asset.storage_key}.probe{'-' + fingerprint + '.json' if fingerprint else ''}"


def fingerprint(size: int, head: bytes) -> str:
    """The file an answer belongs to: its size and first bytes. A new PUT to the asset (another file)
    finds no answer under its own fingerprint, so a stale one is never shown as the new file's."""
    return hashlib.sha256(str(size).encode() + b"/" + head[:FINGERPRINT_BYTES]).hexdigest()[:32]


def request(session: Session, settings: JobsSettings, storage: Storage, key: ApiKey, asset_id: str) -> schemas.Probe:
    """Queue a probe of the caller's uploaded video asset; any earlier answer is dropped first. Probes count
    against `probes_per_minute`: they share the preview queue with everyone's previews."""
    asset = uploads.owned(session, key, asset_id)
    uploads.check_stored(storage, asset.storage_key, asset, "video")
    quota.lock_key(session, key)
    quota.check_rate(session, key, Work.PROBE, settings.probes_per_minute)
    storage.delete_prefix(result_key(asset))
    queue.send(settings, PROBE, asset.id, settings.preview_queue)  # seconds of work: never behind full renders
    session.commit()  # the stamp: a probe counts against the key's rate once it is queued
    return schemas.Probe(state="pending")


def read(session: Session, storage: Storage, key: ApiKey, asset_id: str) -> schemas.Probe:
    """The stored answer for the caller's asset, `pending` while there is none."""
    asset = uploads.owned(session, key, asset_id)
    size = storage.size(asset.storage_key)
    if size is None:
        return schemas.Probe(state="pending")
    where = result_key(asset, fingerprint(size, storage.head(asset.storage_key, FINGERPRINT_BYTES)))
    if storage.size(where) is None:
        return schemas.Probe(state="pending")
    try:
        return schemas.Probe.model_validate_json(storage.head(where, MAX_ANSWER_BYTES))
    except ValidationError:  # a half-written or foreign object: ask again
        return schemas.Probe(state="pending")


def measure(path: Path, limits: Limits) -> schemas.Probe:
    """The video's probe under the deployment's limits and its face at the start, or the error code
    an edit of it would fail with (worker side: this loads MediaPipe)."""

    try:
        info = probe_input(path, EditChoices(), limits)
        detections: list[list[faces.Detection]] = []
        with faces.FaceDetector() as detector:
            for frame in read_frames(path):
                detections.append(detector.detect(frame.image))
                if len(detections) >= PROBE_FRAMES:
                    break
        track = faces.track(detections, EditChoices().face_selection(), frame_size=(info.width, info.height))
        found = next(((i, box) for i, box in enumerate(track) if box is not None), None)
        if found is None:
            raise InputError(ErrorCode.NO_FACE, f"no face found in the first {len(detections)} frames")
    except InputError as exc:
        message = str(exc).replace(str(path), "the uploaded file")
        return schemas.Probe(state="failed", error=schemas.JobError(code=exc.code, message=message))
    index, box = found
    start = faces.faces_at_start(detections)
    shown = [d.box for d in start[1]] if start is not None and start[0] == index else [box]
    return schemas.Probe(
        state="ready",
        duration_s=info.duration_s,
        fps=float(info.fps),
        frames=info.frame_count,
        width=info.width,
        height=info.height,
        has_audio=info.has_audio,
        face=schemas.ProbeFace(frame=index, box=_rounded(box)),
        faces=[_rounded(b) for b in shown],
    )


def _rounded(box: faces.Box) -> list[float]:
    return [round(v, 1) for v in (box.x0, box.y0, box.x1, box.y1)]


def run(settings: JobsSettings, storage: Storage, asset_id: str, work: Path) -> str:
    """The worker's task: fetch the asset into `work`, measure it, store the answer. An asset
    deleted meanwhile is skipped. The record is read in a session of its own, closed before the work."""
    with session_scope(settings.db_url) as session:
        asset = session.get(Asset, asset_id)
        if asset is None:
            return "deleted"
        session.expunge(asset)
    source = work / "video"
    storage.get_file(asset.storage_key, source)
    answer = measure(source, settings.limits())
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=work, delete=False) as out:
        json.dump(answer.model_dump(mode="json", exclude_none=True), out)
    with source.open("rb") as file:
        measured = fingerprint(source.stat().st_size, file.read(FINGERPRINT_BYTES))
    storage.put_file(result_key(asset, measured), Path(out.name), "application/json")
    return answer.state
