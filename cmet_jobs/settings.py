"""Service and worker settings: the core settings plus what the API, the queue and storage need.

One object, read from `CMET_*` environment variables. The defaults are the embedded single-machine
setup (SQLite and local files under CMET_DATA_DIR); compose overrides them with PostgreSQL, Redis
and MinIO.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cmet_core.modelsets.manifests import FeatureKind, SpeechKind
from cmet_core.options import DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS_PER_SECOND, Limits
from cmet_core.settings import CoreSettings

BatchedModel = Literal["edtalk_encoder", "edtalk_renderer", SpeechKind, FeatureKind]
"""A batch policy's name: the backbone's encoder and renderer (the `edtalk_*` policies serve whichever
backbone a set names), and the set's other batched members by their kind."""


class ModelBatching(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch: int = Field(ge=1, le=256)
    max_wait_ms: float = Field(ge=0, le=1000)


class JobsSettings(CoreSettings):
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in DATA_DIR.")
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker.")
    queue: str = Field(default="cmet-edits", description="Celery queue the API submits edit jobs to.")
    preview_queue: str = Field(
        default="cmet-previews",
        description="Celery queue of clip previews and contact sheets; workers take from it before the edit queue.",
    )
    webhook_queue: str = Field(
        default="cmet-webhooks",
        description="Celery queue of webhook deliveries, for webhook workers only: a slow receiver holds no edit up.",
    )
    webhook_concurrency: int = Field(
        default=8, ge=1, le=256, description="Deliveries a webhook worker sends at once (threads, no models)."
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Deadline of one delivery attempt (connect, send, the whole answer); past it the attempt "
        "failed and is retried on the schedule.",
    )
    max_prefer_wait_s: float = Field(
        default=60.0,
        ge=0,
        le=600,
        description="`Prefer: wait=N` on a submission holds the answer until the job ends, at most this long "
        "(0: never wait); a job that ends in time is answered 200 with its result, else the usual 202.",
    )
    max_batch_edits: int = Field(
        default=50,
        ge=1,
        le=1000,
        description="Edits one `POST /v1/batches` may hold; each counts against the key's quotas like a "
        "submission of its own.",
    )
    webhook_secret_grace_s: int = Field(
        default=86400,
        ge=0,
        le=30 * 86400,
        description="After `POST /v1/keys/self/webhook-secret`, how long deliveries are signed with the old "
        "secret too, so receivers can roll over to the new one.",
    )

    storage: Literal["local", "s3"] = "local"
    storage_dir: Path | None = Field(default=None, description="Local storage root; default: DATA_DIR/storage.")
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint clients reach for presigned URLs, when it differs (compose: MinIO behind a proxy).",
    )
    s3_bucket: str = "cmet"
    s3_prefix: str = ""

    public_url: str | None = Field(
        default=None,
        description="Base URL clients reach the API at, named by signed local uploads and downloads. Unset: an "
        "answer names the origin its request came to (localhost, a LAN name, a proxy that keeps Host), so the "
        "page's uploads stay same-origin; URLs made outside a request (webhooks) name api_url.",
    )
    api_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where this API listens (`cmet serve` sets it): signed local URLs made outside a request name "
        "it when public_url is unset.",
    )
    url_signing_key: str | None = Field(
        default=None, description="HMAC key of signed local URLs; default: one kept in DATA_DIR."
    )
    url_ttl_s: int = Field(default=3600, ge=60, description="Lifetime of presigned download and upload URLs.")

    max_video_bytes: int = Field(default=500 * 1024**2, gt=0)
    max_speech_bytes: int = Field(default=50 * 1024**2, gt=0)
    max_video_duration_s: float = Field(default=600.0, gt=0, description="Longer videos are refused at submission.")
    max_video_frames: int = Field(
        default=DEFAULT_MAX_FRAMES, gt=0, description="Videos with more frames are refused (10 min at 60 fps)."
    )
    max_pixels_per_second: float = Field(
        default=DEFAULT_MAX_PIXELS_PER_SECOND,
        gt=0,
        description="Videos with more width x height x frame rate are refused (1080p at 60 fps).",
    )
    max_json_bytes: int = Field(
        default=1 << 20, gt=0, description="Largest JSON (or other non-file) request body; file uploads have their own."
    )
    allow_private_urls: bool = Field(
        default=False, description="Let URL inputs and webhooks reach private/LAN addresses."
    )

    metrics_token: str | None = Field(
        default=None,
        description="Bearer token Prometheus sends for the API's /metrics (all keys' job counts); unset: no /metrics.",
    )
    ready_needs_workers: bool = Field(
        default=True,
        description="/readyz answers 503 while no edit worker was seen lately. False where the workers scale to "
        "zero (the Helm chart): the API must stay in its Service to take the submissions that wake them.",
    )
    docs: bool = Field(default=True, description="Serve the interactive API docs (/docs, /openapi.json).")
    asset_retention_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="An uploaded asset no new edit used for this long is deleted (record and file).",
    )
    submission_threads: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "API threads for submissions' heavy work (saving, probing, hashing, storing uploads); more "
            "submissions wait for one, while reads keep their own threads."
        ),
    )

    url_probe_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="Deadline of one URL input's probe at submission (every redirect hop, connect and read "
        "together): a server that drips bytes holds a submission thread no longer.",
    )
    submissions_per_key: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Submissions (edits, previews, emotions) of one key an API process works on at once; more "
        "are refused (429 concurrent_submissions), so one key never holds every submission thread.",
    )
    event_streams_per_key: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="Open event streams (/v1/edits/{id}/events) of one key per API process; more are refused "
        "(429 stream_limit).",
    )
    webhook_key_concurrency: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Deliveries of one key in flight at once across the webhook workers; its others wait, so a "
        "slow receiver holds at most this many of the webhook threads.",
    )
    previews_per_key: int = Field(
        default=2,
        ge=1,
        le=1000,
        description="Previews (clip previews and contact sheets) of one key queued or running at once; more are "
        "refused (429 concurrent_limit), so one key's share of the preview queue is bounded.",
    )
    previews_before_edit: int = Field(
        default=4,
        ge=0,
        description="Previews go before waiting edits, but at most this many start while an edit waits: the "
        "next preview taken from the preview queue steps behind it (re-queued on the edit queue).",
    )
    probes_per_minute: int = Field(
        default=10, ge=1, description="Probes of uploaded videos one key may ask for in a minute (429 rate_limit)."
    )
    uploads_per_minute: int = Field(
        default=60, ge=1, description="Asset records (POST /v1/uploads) a key may create in a minute (429 rate_limit)."
    )
    max_assets_per_key: int = Field(
        default=500, ge=1, description="Assets one key may hold at once (429 asset_limit); deleting one frees a place."
    )

    worker_metrics_port: int = Field(default=9808, ge=0, le=65535, description="Prometheus port of a worker (0: none).")
    batch_max: int = Field(
        default=8, ge=1, le=256, description="Most rows (frames, clips) per batched forward across a worker's jobs."
    )
    batch_wait_ms: float = Field(
        default=5.0, ge=0, le=1000, description="Longest wait for other jobs' rows before a forward runs."
    )
    batch_models: dict[BatchedModel, ModelBatching] = Field(
        default_factory=dict,
        description=(
            "Per-model overrides of batch_max/batch_wait_ms, as JSON: "
            '{"emotion2vec": {"max_batch": 4, "max_wait_ms": 20}}.'
        ),
    )
    creating_timeout_s: float = Field(
        default=600.0, gt=0, description="A job still being created after this long lost its API process: removed."
    )
    job_max_attempts: int = Field(default=3, ge=1, description="Deliveries of one job before it fails for good.")
    job_lease_s: float = Field(
        default=10.0,
        ge=1,
        le=300,
        description="A running job's lease on its record, renewed every quarter of it: a worker killed or cut off "
        "from the database loses its job this long after its last renewal, and another worker takes it over. "
        "Shorter: a quicker take-over, more renewals written, and a worker stalled this long loses its job.",
    )
    job_handback_s: float = Field(
        default=2.0,
        ge=0,
        description="After SIGTERM, how long a running edit may go on before it is handed back to the queue "
        "(at its next chunk, the attempt not counted), so a worker stops within docker stop's 10 s.",
    )
    scratch_dir: Path | None = Field(
        default=None,
        description="Root of the workers' per-job scratch folders, swept of orphaned ones (a killed worker's); "
        "default: DATA_DIR/scratch.",
    )
    models_set: Path | None = Field(
        default=None, description="Model set the worker serves; default: the models dir's choice."
    )

    @model_validator(mode="after")
    def _webhooks_apart(self) -> JobsSettings:
        if self.webhook_queue == self.queue:
            raise ValueError("webhook_queue must differ from queue: deliveries never wait behind edits")
        if self.preview_queue in (self.queue, self.webhook_queue):
            raise ValueError("preview_queue must differ from queue and webhook_queue: previews never wait behind edits")
        return self

    @model_validator(mode="after")
    def _defaults_under_data_dir(self) -> JobsSettings:
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.data_dir / 'cmet.db'}"
        if self.storage_dir is None:
            self.storage_dir = self.data_dir / "storage"
        if self.scratch_dir is None:
            self.scratch_dir = self.data_dir / "scratch"
        return self

    def signing_key(self) -> bytes:
        """The configured key, else one generated once and kept beside the data, so every process agrees."""
        if self.url_signing_key:
            return self.url_signing_key.encode()
        path = self.data_dir / "url-signing.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with path.open("x") as f:
                    f.write(secrets.token_urlsafe(32))
            except FileExistsError:
                pass
        return path.read_text().strip().encode()

    def limits(self) -> Limits:
        """This deployment's input limits: the API checks uploads with them at submission, the worker runs
        every edit with them (beside the job's own choices)."""
        return Limits(
            max_duration_s=self.max_video_duration_s,
            max_frames=self.max_video_frames,
            max_pixels_per_second=self.max_pixels_per_second,
            max_timeline_segments=self.max_timeline_segments,
            max_faces=self.max_faces,
            encoder=self.video_encoder,
            preset=self.x264_preset,
        )

    def batching(self, model: BatchedModel) -> tuple[int, float]:
        """(max rows, max wait in ms) of one model's dynamic batcher."""
        own = self.batch_models.get(model)
        return (own.max_batch, own.max_wait_ms) if own is not None else (self.batch_max, self.batch_wait_ms)

    @property
    def url_schemes(self) -> tuple[str, ...]:
        """Plain http only where private (LAN) targets are allowed; the internet gets https."""
        return ("https", "http") if self.allow_private_urls else ("https",)

    @property
    def scratch_root(self) -> Path:
        assert self.scratch_dir is not None
        return self.scratch_dir

    @property
    def db_url(self) -> str:
        assert self.database_url is not None
        return self.database_url


@lru_cache(maxsize=1)
def get_jobs_settings() -> JobsSettings:
    return JobsSettings()
