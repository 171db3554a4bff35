"""The workers' Prometheus metrics (prometheus-client multiprocess mode: prefork children write
files under PROMETHEUS_MULTIPROC_DIR, the worker's main process serves their sum).

Names follow Prometheus conventions: `cmet_` prefix, `_seconds` and `_total` suffixes, and no job
or key ids as labels (unbounded label values would grow the series without end).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

JOBS = Counter("cmet_jobs_total", "Edit jobs that reached a state in a worker.", ["state"])
QUEUE_WAIT = Histogram(
    "cmet_queue_wait_seconds",
    "From submission to a worker starting the job.",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600),
)
STAGE = Histogram(
    "cmet_stage_duration_seconds",
    "Seconds per pipeline stage of one job.",
    ["stage"],
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
FRAMES = Counter("cmet_frames_processed_total", "Video frames edited.")
MODEL_LOAD = Histogram(
    "cmet_model_load_seconds", "Loading a model set into a worker.", buckets=(0.5, 1, 2, 5, 10, 30, 60, 120)
)
GPU_MEMORY = Gauge(
    "cmet_gpu_memory_bytes", "CUDA memory allocated by this worker's models.", ["device"], multiprocess_mode="livemax"
)
BATCH = Histogram(
    "cmet_batch_size",
    "Frames per batched model forward, across concurrent jobs.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
WEBHOOKS = Counter("cmet_webhook_deliveries_total", "Webhook delivery attempts by outcome.", ["outcome"])


def serve(port: int) -> None:
    """Expose the summed metrics of this worker's processes on `port` (called in the main process)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, registry=registry)
    else:
        start_http_server(port)


def record_gpu_memory() -> None:
    import torch  # deferred: torch

    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            GPU_MEMORY.labels(device=str(index)).set(torch.cuda.memory_allocated(index))
