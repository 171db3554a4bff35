"""Keeps one worker per device running: restarts a crashed one with backoff, stops all on a signal."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from worker.devices import DeviceSlot, command

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0


def die_with_parent() -> None:
    """Linux: a child gets SIGTERM when its parent dies, even by SIGKILL, so no worker is orphaned."""
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    slot: DeviceSlot
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = 0.0

    def start(self, say: Callable[[str], None]) -> None:
        self.proc = subprocess.Popen(self.args, env=self.env, start_new_session=True, preexec_fn=die_with_parent)
        self.started = time.monotonic()
        say(f"worker {self.slot.name} started (pid {self.proc.pid})")


def supervise(
    slots: list[DeviceSlot],
    shared_queue: str,
    concurrency: int,
    base_port: int,
    say: Callable[[str], None],
    poll_s: float = 0.5,
) -> None:
    children = [
        Child(
            slot,
            command(slot, shared_queue, concurrency),
            {**os.environ, **slot.environment(base_port + i if base_port else 0)},
        )
        for i, slot in enumerate(slots)
    ]
    stopping = False

    def _stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for child in children:
        child.start(say)
    while not stopping:
        time.sleep(poll_s)
        for child in children:
            if child.proc is not None and child.proc.poll() is not None:
                code = child.proc.returncode
                stable = time.monotonic() - child.started > 60
                child.restarts = 0 if stable else child.restarts + 1
                delay = min(MAX_BACKOFF_S, 2.0**child.restarts - 1)
                say(f"worker {child.slot.name} exited with {code}; restarting in {delay:.0f} s")
                child.proc, child.next_start = None, time.monotonic() + delay
            if child.proc is None and not stopping and time.monotonic() >= child.next_start:
                child.start(say)
    for child in children:
        if child.proc is not None and child.proc.poll() is None:
            os.killpg(child.proc.pid, signal.SIGTERM)
    for child in children:
        if child.proc is not None:
            try:
                child.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(child.proc.pid, signal.SIGKILL)
