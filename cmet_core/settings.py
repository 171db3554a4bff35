"""The one settings object of the model library, read from `CMET_*` environment variables.

Service and worker settings extend this class rather than reading the environment themselves.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cmet_core.emotion.timeline import DEFAULT_MAX_SEGMENTS
from cmet_core.media.video import DEFAULT_PRESET, VideoEncoder, X264Preset

DEFAULT_MAX_FACES = 4
MAX_FACES = 16
"""Faces one edit changes: the deployment's default limit, and the most any deployment may allow (each face is
about one more edit's network work)."""


def _default_data_dir() -> Path:
    return Path.home() / ".cache" / "cmet"


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CMET_", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(default_factory=_default_data_dir, description="All local state lives under here.")
    models_dir: Path | None = Field(
        default=None,
        description="Model sets; default ~/.cache/cmet/models, which CMET_DATA_DIR does not move (one set serves "
        "every command and every data dir).",
    )
    test_data: Path = Field(
        default=Path(__file__).resolve().parent.parent.parent / "shared" / "data",
        description="Real fixtures for tests and benchmarks (never copied into the project).",
    )
    conformance_kit: Path = Field(
        default=Path(__file__).resolve().parent.parent.parent / "shared" / "conformance",
        description="Conformance kit checked by `cmet conformance` when no --kit is given.",
    )
    device: str = Field(default="auto", description="'auto', 'cpu' or a torch device string such as 'cuda:0'.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32", description="EDTalk compute precision (autocast); fp16 needs CUDA."
    )
    channels_last: bool = Field(
        default=False, description="EDTalk convolutions in channels-last memory layout (pays on CUDA)."
    )
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        default="off", description="torch.compile mode for EDTalk; 'reduce-overhead' adds CUDA graphs."
    )
    render_batch: int | None = Field(
        default=None, ge=1, le=256, description="Frames per EDTalk forward; default 8 on CUDA, 1 on the CPU."
    )
    num_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads of torch, OpenCV and each video codec per process (the thread policy, "
        "cmet_core/threads.py); unset: the cores this process may use, shared among a host's workers.",
    )
    video_encoder: VideoEncoder = Field(
        default="auto",
        description="Output video encoder: auto is NVENC's H.264 on a CUDA worker that has it, else libx264.",
    )
    x264_preset: X264Preset = Field(
        default=DEFAULT_PRESET, description="libx264's preset (speed against size at the same CRF quality)."
    )
    log_format: Literal["auto", "text", "json"] = Field(
        default="auto", description="Log lines on stderr: 'json' is one JSON object a line; 'auto' and 'text' are text."
    )
    log_level: str = Field(default="INFO", description="Root log level (DEBUG, INFO, WARNING, ...).")
    server: str | None = Field(
        default=None,
        description="A cmet API (`http://host:8000`) that `cmet edit` and `cmet preview` submit to instead of "
        "running the models here; its key is CMET_API_KEY.",
    )
    hf_endpoint: str | None = Field(default=None, description="Hub mirror for `cmet models pull`.")
    registry: str | None = Field(
        default=None, description="Connector registry: a directory or s3://bucket/prefix; default DATA_DIR/registry."
    )
    connector_version: str | None = Field(
        default=None,
        description="Connector served from the registry: 'latest' or a version; unset serves the model set's own.",
    )
    max_timeline_segments: int = Field(
        default=DEFAULT_MAX_SEGMENTS, ge=1, description="Most segments an edit's timeline may have (CLI, API, worker)."
    )
    max_faces: int = Field(
        default=DEFAULT_MAX_FACES,
        ge=1,
        le=MAX_FACES,
        description="Most faces one edit may change (`faces`; CLI, API, worker).",
    )
    quality_fps: float = Field(
        default=5.0, gt=0, le=60, description="Frames a second of output the quality report reads (expression, mouth)."
    )
    quality_identity_fps: float = Field(
        default=0.5, gt=0, le=60, description="Frames a second the quality report takes identity descriptors of."
    )
    quality_emotion_model: Path | None = Field(
        default=None,
        description="A TFLite expression classifier for the quality report with fer's contract (1x64x64x1 grey "
        "in [-1, 1] -> 7 classes angry, disgust, fear, happy, sad, surprise, neutral); default fer's.",
    )
    # S3 connection (the registry here; the service's storage too)
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else _default_data_dir() / "models"

    @property
    def resolved_registry(self) -> str:
        return self.registry if self.registry is not None else str(self.data_dir / "registry")


@lru_cache(maxsize=1)
def get_settings() -> CoreSettings:
    return CoreSettings()
