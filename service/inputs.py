"""Saving multipart parts to disk with their size limits, as they arrive."""

from __future__ import annotations

from pathlib import Path

from starlette.datastructures import UploadFile

from cmet_core.errors import ErrorCode
from cmet_jobs.errors import RequestError

CHUNK = 1 << 20


def save_upload(upload: UploadFile, directory: Path, name: str, max_bytes: int) -> Path:
    """Copy an uploaded part to `directory/name`, refusing it (413) past `max_bytes`."""
    if upload.size is not None and upload.size > max_bytes:
        raise RequestError(
            ErrorCode.FILE_TOO_LARGE,
            f"part `{upload.filename or name}` is {upload.size} bytes; the limit is {max_bytes}",
        )
    target = directory / name
    written = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(CHUNK):
            written += len(chunk)
            if written > max_bytes:
                raise RequestError(
                    ErrorCode.FILE_TOO_LARGE, f"part `{upload.filename or name}` is over the limit of {max_bytes} bytes"
                )
            out.write(chunk)
    if written == 0:
        raise RequestError(ErrorCode.EMPTY_FILE, f"part `{upload.filename or name}` is empty")
    return target
