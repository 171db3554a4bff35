"""Training configuration as data: one TOML (or JSON) file with data, model, optimiser, schedule,
loss, evaluation and checkpoint sections, validated by pydantic.

The shipped files live in `training/configs/`; `cmet-train train --config NAME` finds them by
name, and `--set section.key=value` overrides single values without editing a file.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from cmet_core.backbones.registry import DEFAULT_BACKBONE, backbone_names

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticDataConfig(_Section):
    """Knobs of the synthetic ground truth (see `training.synthetic`)."""

    features: Path | None = Field(default=None, description="emotion2vec+ feature folders; default CMET_TEST_DATA/e2v.")
    hidden_units: int = Field(default=64, ge=1, description="Width of the hidden speech -> face map.")
    nonlinearity: float = Field(
        default=1.0, gt=0, description="Std of the map's tanh inputs over the training vectors (0.25: nearly linear)."
    )
    gain_spread: float = Field(default=0.2, ge=0, lt=1, description="Per-speaker gain on the change, 1 +- this.")
    blend_share: float = Field(
        default=0.5, ge=0, le=1, description="Share of training pairs whose vector blends three clips."
    )
    held_out_share: float = Field(
        default=0.2, gt=0, lt=1, description="Share of basic-emotion clips kept for evaluation."
    )


class DataConfig(_Section):
    layout: Literal["mead", "crema-d", "synthetic"]
    root: Path | None = Field(default=None, description="Dataset root for the mead and crema-d layouts.")
    window: int = Field(default=5, ge=1, description="Frames per connector window (the published connector: 5).")
    held_out_speakers: tuple[str, ...] = Field(default=(), description="Speakers kept out of training for evaluation.")
    emotions: tuple[str, ...] | None = Field(default=None, description="Emotions to train on; default all in the data.")
    teacher_forcing: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of windows whose reference is the previous window's true change (the rest get zeros, "
        "as a clip's first window does). Above 0: a batch of all-zero references has no variance for the "
        "reference encoder's batch norms, whose gradients then blow up to about 1e15 and gradient clipping stops all "
        "learning.",
    )
    synthetic: SyntheticDataConfig = SyntheticDataConfig()

    @model_validator(mode="after")
    def _root_for_real_layouts(self) -> DataConfig:
        if self.layout != "synthetic" and self.root is None:
            raise ValueError(f"data.root is required for the {self.layout} layout")
        return self


class ModelConfig(_Section):
    connector: dict[str, Any] = Field(
        default_factory=dict, description="ConnectorConfig fields; missing ones take the published values."
    )
    contrast_dim: int = Field(default=64, ge=1, description="Width of the contrastive token space.")
    temperature: float = Field(default=0.1, gt=0)
    init: str | None = Field(
        default=None, description="Registry version (or 'latest') to start from; recorded as the parent."
    )


class OptimConfig(_Section):
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = Field(default=1.0, gt=0, description="Max global gradient norm.")


class ScheduleConfig(_Section):
    steps: int = Field(default=10000, ge=1)
    warmup_steps: int = Field(default=0, ge=0)
    kind: Literal["cosine", "constant"] = "cosine"
    final_lr_ratio: float = Field(default=0.05, ge=0, le=1, description="Cosine decays to lr times this.")


class LossConfig(_Section):
    """L = L_rec(i->j) + L_rec(j->i) + contrastive * L_cnt + directional * L_dir (the paper's weights)."""

    reconstruction: Literal["l1", "mse"] = "l1"
    contrastive: float = Field(default=0.1, ge=0)
    directional: float = Field(default=0.05, ge=0)


class EvalConfig(_Section):
    every: int = Field(default=500, ge=1, description="Evaluate every this many steps (and at the end).")
    pairs: int = Field(default=256, ge=1, description="Held-out pairs per evaluation.")


class CheckpointConfig(_Section):
    every: int = Field(default=1000, ge=1)
    keep: int = Field(default=3, ge=1, description="Most recent checkpoints kept on disk.")


def _backbone(name: str) -> str:
    if name not in backbone_names():
        raise ValueError(f"unknown backbone {name!r} (registered: {', '.join(backbone_names())})")
    return name


class TrainConfig(_Section):
    backbone: Annotated[str, AfterValidator(_backbone)] = Field(
        default=DEFAULT_BACKBONE,
        description="The backbone whose expression code the connector edits: its width (EDTalk 10, PD-FGC 30) and "
        "the features training reads come from it.",
    )
    name: str = Field(default="connector", pattern=r"^[a-z0-9][a-z0-9._-]*$")
    seed: int = 0
    device: str = Field(default="auto", description="'auto', 'cpu' or a torch device such as 'cuda:0'.")
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        default="auto", description="Autocast: 'auto' is bf16 on CUDA (fp16 where bf16 is missing) and off on the CPU."
    )
    batch: int = Field(default=64, ge=2, description="Pairs per step (the contrastive loss needs two or more).")
    log_every: int = Field(default=50, ge=1)
    data: DataConfig
    model: ModelConfig = ModelConfig()
    optim: OptimConfig = OptimConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    loss: LossConfig = LossConfig()
    eval: EvalConfig = EvalConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    def to_data(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_data(), sort_keys=True).encode()).hexdigest()


class ConfigError(ValueError):
    """A configuration that cannot be read or does not validate; the message names the file and field."""


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`section.key=value` pairs (values parsed as JSON when they parse, else kept as strings)."""
    for item in overrides:
        path, sep, value = item.partition("=")
        if not sep or not path:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. schedule.steps=200)")
        node = data
        *parents, leaf = path.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            node = child
        node[leaf] = _parse_value(value)
    return data


def find_config(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIGS_DIR / f"{name_or_path}.toml", CONFIGS_DIR / str(name_or_path)):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.toml")))
    raise ConfigError(f"no config file {name_or_path!r} (shipped configs: {shipped})")


def load_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    path = find_config(name_or_path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    return validate_config(apply_overrides(data, list(overrides)), str(path))


def validate_config(data: dict[str, Any], where: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"config {where} is invalid: {problems}") from None
