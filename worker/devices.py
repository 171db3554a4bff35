"""One worker process tree per device: which devices, and each one's command and environment.

CUDA is never initialised in the supervising process: devices are counted with `nvidia-smi`
(NVML), and each worker is a fresh process (spawned, not forked) that sees only its own GPU
through CUDA_VISIBLE_DEVICES, so inside it the device is always `cuda:0`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceSlot:
    name: str  # "gpu0", "gpu1", ... or "cpu"
    cuda_index: int | None

    def queues(self, shared: str, preview: str | None = None) -> list[str]:
        """Every worker takes the shared queue; its own queue lets work be aimed at one device. With a
        preview queue, its two come first: the broker hands out previews before any waiting edit."""
        own = [shared, f"{shared}.{self.name}"]
        return [preview, f"{preview}.{self.name}", *own] if preview is not None else own

    def environment(self, metrics_port: int, threads: int) -> dict[str, str]:
        """`threads`: this worker's share of the host's cores (`CMET_NUM_THREADS`, the thread policy)."""
        env = {"CMET_WORKER_METRICS_PORT": str(metrics_port), "CMET_NUM_THREADS": str(threads)}
        if self.cuda_index is None:
            env |= {"CUDA_VISIBLE_DEVICES": "", "CMET_DEVICE": "cpu"}
        else:
            env |= {"CUDA_VISIBLE_DEVICES": str(self.cuda_index), "CMET_DEVICE": "cuda:0"}
        return env


def count_gpus() -> int:
    """GPUs NVML sees, without touching CUDA in this process; 0 without a driver."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def plan(spec: str, available: int) -> list[DeviceSlot]:
    """`all` (every GPU, else the CPU), `cpu`, or GPU indices such as `0,1`."""
    spec = spec.strip().lower()
    if spec == "cpu" or (spec == "all" and available == 0):
        return [DeviceSlot("cpu", None)]
    if spec == "all":
        return [DeviceSlot(f"gpu{i}", i) for i in range(available)]
    try:
        indices = sorted({int(part) for part in spec.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"--devices takes all, cpu or GPU indices such as 0,1; got {spec!r}") from None
    if not indices:
        raise ValueError("--devices lists no device")
    missing = [i for i in indices if not 0 <= i < available]
    if missing:
        raise ValueError(f"GPU {', '.join(map(str, missing))} not present (this machine has {available})")
    return [DeviceSlot(f"gpu{i}", i) for i in indices]


def celery_worker(
    queues: list[str], concurrency: int, pool: str, name: str, loglevel: str = "info", quiet: bool = False
) -> list[str]:
    """`quiet`: no start-up banner (`cmet serve` prints its own short summary)."""
    return [
        sys.executable,
        "-m",
        "celery",
        *(["--quiet"] if quiet else []),
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "--pool",
        pool,
        "-n",
        f"{name}@%h",
        "-l",
        loglevel,
    ]


def job_queues(queue: str, preview_queue: str) -> list[str]:
    """The queues a single (device-less) job worker consumes, in the order it asks for them: previews first."""
    return [preview_queue, queue]


def command(slot: DeviceSlot, shared_queue: str, concurrency: int, preview_queue: str | None = None) -> list[str]:
    # several jobs at once run as threads of one process: one copy of the models, batched forwards
    pool = "threads" if concurrency > 1 else "prefork"
    return celery_worker(slot.queues(shared_queue, preview_queue), concurrency, pool, f"cmet-{slot.name}")


WEBHOOK_ENV = {"CUDA_VISIBLE_DEVICES": "", "CMET_DEVICE": "cpu"}
"""A webhook worker touches no device."""


def webhook_command(queue: str, concurrency: int, loglevel: str = "info", quiet: bool = False) -> list[str]:
    """The webhook worker: only the webhook queue, deliveries as threads (each waits on a network
    answer, bounded by `webhook_timeout_s`), no models (`celery_app.roles`)."""
    return celery_worker([queue], concurrency, "threads", "cmet-webhooks", loglevel, quiet)
