"""Saving multipart parts to disk with their size limits, as they arrive, in scratch folders that a
restarted API removes when the process that made them is gone (killed mid-request)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
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


_SCRATCH = re.compile(r"^cmet-(req|emo)-(\d+)-")


def scratch_prefix(kind: str) -> str:
    """`cmet-req-<pid>-`: the folder names the process that owns it."""
    return f"cmet-{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_scratch(root: Path | None = None) -> list[Path]:
    """Remove request scratch folders whose API process is gone; the living ones' are left alone."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for folder in root.glob("cmet-*-*-*"):
        match = _SCRATCH.match(folder.name)
        if match is not None and folder.is_dir() and not _alive(int(match.group(2))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
