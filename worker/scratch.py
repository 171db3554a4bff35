"""The workers' scratch folders: one per running job under one root (`scratch_dir`), swept when orphaned.

A job's folder `<root>/cmet-<record id>-<random>/` has a lock file beside it, `<folder>.lock`, which
the process running the job creates and locks (flock) before the folder exists and holds until the
folder is gone. The kernel drops a flock when its holder dies, even by SIGKILL. So the rule of the
sweep is: a folder is orphaned when its lock can be taken, that is when no live process runs its job.
A running job's folder is never taken: its process holds the lock. The only unlocked moment is
between creating the lock file and locking it (microseconds); a lock file younger than
`LOCK_GRACE_S` is left alone for it (and should a process stall there past it, its folder ends up
without a lock file: then the age rule below applies, which waits out any job).

Folders without a lock file (also those of earlier versions, which used the system temp folder,
compose's scratch volume, with the same names) are removed once older than any job may run
(`LOCKLESS_AFTER_S`, above the hard time limit).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cmet_jobs.queue import MAX_TASK_S

log = logging.getLogger(__name__)
PREFIX = "cmet-"
LOCK_SUFFIX = ".lock"
LOCK_GRACE_S = 1.0  # the unlocked moment lasts microseconds; a restarted worker sweeps a killed one's at once
LOCKLESS_AFTER_S = MAX_TASK_S + 600.0
_NAME = re.compile(r"^cmet-[a-z]+_[0-9a-f]{32}-[0-9a-z_]+$")  # a record id: edt_<hex>, emo_<hex>


_INPUT_NAMES = {
    "video": "the video",
    "speech_track": "the speech track",
    "pose_video": "the pose video",
    "eye_video": "the eye video",
    "window.mov": "the preview window of the video",
}
_SPEECH_CLIP = re.compile(r"^speech(\d+)$")


def public_message(message: str, root: Path) -> str:
    """A failed job's message as its owner reads it: every path under the scratch root (where the worker
    keeps a job's copies of its inputs) becomes the name of the input it holds. A server path tells the
    user nothing and an attacker where the workers keep their files."""
    paths = re.compile(re.escape(str(root)) + r"/[^\s:'\"]+")
    return paths.sub(lambda found: _input_name(Path(found.group())), message)


def _input_name(path: Path) -> str:
    clip = _SPEECH_CLIP.match(path.name)
    if clip:
        return f"speech clip {int(clip.group(1)) + 1}"
    return _INPUT_NAMES.get(path.name, "an intermediate file of the job")


@contextmanager
def job_folder(root: Path, record_id: str) -> Iterator[Path]:
    """An empty folder for one job's files, removed at the end; locked for as long as this process runs it."""
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{PREFIX}{record_id}-{secrets.token_hex(4)}"
    lock = folder.with_name(folder.name + LOCK_SUFFIX)
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: free, unless a sweep found it in the moment before
        folder.mkdir(mode=0o700)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def _orphaned_lock(lock: Path, now: float, grace_s: float) -> int | None:
    """An fd holding `lock` when no one else holds it (and it is past its grace), else None."""
    try:
        if now - lock.stat().st_mtime < grace_s:
            return None
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:  # its job ended meanwhile
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # held: the job runs
        os.close(fd)
        return None
    return fd


def sweep(root: Path, lock_grace_s: float = LOCK_GRACE_S) -> list[Path]:
    """Remove the orphaned folders under `root` (see the module's rule); returns what was removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for entry in sorted(root.iterdir()):
        if entry.name.endswith(LOCK_SUFFIX):
            folder = entry.with_name(entry.name.removesuffix(LOCK_SUFFIX))
            if not _NAME.match(folder.name):
                continue
            fd = _orphaned_lock(entry, now, lock_grace_s)
            if fd is None:
                continue
            try:
                if folder.exists():
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
                entry.unlink(missing_ok=True)
            finally:
                os.close(fd)
        elif _NAME.match(entry.name) and entry.is_dir() and not entry.with_name(entry.name + LOCK_SUFFIX).exists():
            if now - entry.stat().st_mtime > LOCKLESS_AFTER_S:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    if removed:
        log.warning("removed %d orphaned scratch folder(s) under %s", len(removed), root)
    return removed
