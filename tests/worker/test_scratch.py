"""Scratch folders of killed workers: real processes hold real folders, one is killed with SIGKILL,
and the sweep (the worker runs it at start and periodically) removes only what no live process runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cmet_core.errors import InputError
from cmet_core.media.video import probe
from tests.service.stack import ROOT, Stack, wait_until
from worker.scratch import LOCK_SUFFIX, LOCKLESS_AFTER_S, job_folder, public_message, sweep

HOLD = """
import sys, time
from pathlib import Path

import pytest

from cmet_core.errors import InputError
from cmet_core.media.video import probe
from worker.scratch import job_folder

with job_folder(Path(sys.argv[1]), sys.argv[2]) as folder:
    (folder / "video").write_bytes(b"x" * 100_000)
    print(folder, flush=True)
    time.sleep(120)
"""


def _holder(root: Path, record_id: str) -> tuple[subprocess.Popen[str], Path]:
    """A process running a 'job' in its scratch folder, as a worker does."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), record_id], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def _id() -> str:
    return f"edt_{uuid.uuid4().hex}"


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_only_a_killed_workers_folder_is_swept(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    killed, killed_folder = _holder(root, _id())
    alive, alive_folder = _holder(root, _id())
    try:
        assert (killed_folder / "video").is_file() and (alive_folder / "video").is_file()
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        assert killed_folder.is_dir(), "SIGKILL leaves the folder behind: nothing in the process runs"
        assert sweep(root, lock_grace_s=0) == [killed_folder]
        assert not killed_folder.exists() and not killed_folder.with_name(killed_folder.name + LOCK_SUFFIX).exists()
        assert (alive_folder / "video").is_file(), "a running job's folder is never taken"
        assert sweep(root, lock_grace_s=0) == []
    finally:
        alive.kill()
        alive.wait(10)
    assert sweep(root, lock_grace_s=0) == [alive_folder]


def test_the_sweep_rules_by_lock_and_age(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    with job_folder(root, _id()) as mine:
        young = root / f"cmet-{_id()}-abc"  # no lock file: an earlier version's folder, or one still starting
        old = root / f"cmet-{_id()}-def"
        other = root / "cmet-req-xyz"  # not a job's folder (the API's names)
        for folder in (young, old, other):
            folder.mkdir()
        _age(old, LOCKLESS_AFTER_S + 60)
        _age(other, LOCKLESS_AFTER_S + 60)
        assert sweep(root, lock_grace_s=0) == [old]
        assert mine.is_dir() and young.is_dir() and other.is_dir()
    assert not mine.exists() and not list(root.glob("*.lock")), "a finished job leaves nothing"
    with job_folder(root, _id()) as fresh:
        pass
    assert not fresh.exists()


def test_a_worker_sweeps_at_start(stack: Stack) -> None:
    """A folder left by a worker killed with SIGKILL is gone soon after the next worker starts."""
    root = Path(stack.env["CMET_DATA_DIR"]) / "scratch"
    stack.stop_worker()
    try:
        killed, folder = _holder(root, _id())
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        _age(folder.with_name(folder.name + LOCK_SUFFIX), 60)
        assert folder.is_dir()
    finally:
        stack.start_worker()
    wait_until(lambda: not folder.exists(), 60, "the sweep at the worker's start", stack.worker)


def test_a_failed_jobs_message_names_its_input_not_a_server_path(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    with job_folder(root, f"edt_{uuid.uuid4().hex}") as work:
        for name in ("video", "speech1"):
            (work / name).write_text("not media")
        messages = []
        for name in ("video", "speech1"):
            with pytest.raises(InputError) as caught:
                probe(work / name)
            messages.append(public_message(str(caught.value), root))
        crash = public_message(f"unexpected OSError: [Errno 28] writing {work / 'output.mp4'}", root)
    assert messages[0].startswith("the video: not a media file") and messages[1].startswith("speech clip 2: ")
    assert crash == "unexpected OSError: [Errno 28] writing an intermediate file of the job"
    assert not any(str(root) in m or str(tmp_path) in m for m in [*messages, crash])
