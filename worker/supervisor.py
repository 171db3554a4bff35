"""Keeps worker processes running: restarts a crashed one with backoff, stops all within a bound.

Used by `cmet worker` (one worker per device, or a webhook worker) and `cmet serve` (its edit and
webhook workers). Restarts and shutdown share one lock: once stopping began no child is started
again, so a worker that exits on the same signal is never brought back during shutdown.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 30.0
STABLE_S = 60.0


def die_with_parent() -> None:
    """Linux: a child gets SIGTERM when its parent dies, even by SIGKILL, so no worker is orphaned."""

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = 0.0

    def start(self, say: Callable[[str], None]) -> None:
        # its own process group: a terminal's Ctrl-C reaches the supervisor only, which stops children in order
        self.proc = subprocess.Popen(self.args, env=self.env, start_new_session=True, preexec_fn=die_with_parent)
        self.started = time.monotonic()
        say(f"worker {self.name} started (pid {self.proc.pid})")

    def check(self, say: Callable[[str], None]) -> None:
        """Schedule a restart of a child that exited (backoff only while it keeps dying), start it when due."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            stable = time.monotonic() - self.started > STABLE_S
            self.restarts = 0 if stable else self.restarts + 1
            delay = min(MAX_BACKOFF_S, 2.0**self.restarts - 1)
            say(f"worker {self.name} exited with {code}; restarting in {delay:.0f} s")
            self.proc, self.next_start = None, time.monotonic() + delay
        if self.proc is None and time.monotonic() >= self.next_start:
            self.start(say)


class Supervisor:
    def __init__(self, children: list[Child], say: Callable[[str], None], poll_s: float = 0.5) -> None:
        self.children, self.say, self.poll_s = children, say, poll_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        with self._lock:
            for child in self.children:
                child.start(self.say)

    def keep(self, until: threading.Event | None = None) -> None:
        """Restart children that exit, until `until` is set or stopping begins (a thread, or the main one)."""
        done = until or self._stopping
        while not done.wait(self.poll_s):
            with self._lock:
                if self._stopping.is_set():
                    return
                for child in self.children:
                    child.check(self.say)

    def begin_stop(self) -> None:
        """No more restarts; SIGTERM to each worker's main process: Celery's warm shutdown stops taking
        jobs, and a prefork pool's children finish theirs (signalled directly they would die at once)."""
        if self._stopping.is_set():
            return  # once: a second signal may arrive while the first is handled
        self._stopping.set()
        with self._lock:
            for child in self.children:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.send_signal(signal.SIGTERM)

    def finish_stop(self, deadline: float) -> None:
        """Wait for the children until `deadline` (monotonic), then SIGKILL what is left of each process group."""
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %s did not stop in time; killing it", child.name)
            try:
                os.killpg(child.proc.pid, signal.SIGKILL)  # its group: also children it left behind
            except (ProcessLookupError, PermissionError):
                pass
            child.proc.wait()

    def stop(self, grace_s: float) -> None:
        self.begin_stop()
        self.finish_stop(time.monotonic() + grace_s)


def supervise(children: list[Child], say: Callable[[str], None], grace_s: float = 60.0, poll_s: float = 0.5) -> None:
    """Run `children` until SIGTERM or SIGINT, then stop them (each may finish its job for `grace_s`)."""
    stop = threading.Event()

    def _stop(_signum: int, _frame: object) -> None:
        stop.set()  # only a flag: the loop below may hold the lock when the signal arrives

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    supervisor = Supervisor(children, say, poll_s)
    supervisor.start()
    supervisor.keep(until=stop)
    supervisor.stop(grace_s)
